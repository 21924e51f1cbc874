/**
 * `forge pull` and `--model org/name` through the real CLI, against a local HTTP server that
 * serves forge-tiny as a hub repository the way the hub does (listing with sizes and LFS
 * sha256, resolve URLs, a 302 to a CDN origin, Range, etags). No network.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { FIXTURE_COMMIT, type HubServer, startHubServer } from "@forge/model/testing";
import { FORGE_TINY_DIR } from "@forge/tiny";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { forge, type Run, startForge } from "../run-cli.js";

const REPO = "forge-test/tiny";
const tinyFile = (name: string) => readFileSync(path.join(FORGE_TINY_DIR, name));
const files = () => [
  { path: "config.json", content: tinyFile("config.json") },
  { path: "generation_config.json", content: tinyFile("generation_config.json") },
  { path: "tokenizer.json", content: tinyFile("tokenizer.json") },
  { path: "tokenizer_config.json", content: tinyFile("tokenizer_config.json") },
  { path: "model.safetensors", content: tinyFile("model.safetensors"), lfs: true },
  { path: "README.md", content: tinyFile("README.md") },
];

let server: HubServer;
let home: string;
const start = async () => {
  server = await startHubServer({
    repos: [
      { id: REPO, files: files() },
      { id: "forge-test/gated", files: files(), gated: "hf_granted" },
    ],
  });
};
beforeAll(start);
afterAll(() => server.close());
beforeEach(() => {
  home = mkdtempSync(path.join(os.tmpdir(), "forge-pull-"));
  server.requests.length = 0;
});
afterEach(() => rmSync(home, { recursive: true, force: true }));

const env = (extra: Record<string, string> = {}) => ({
  HF_ENDPOINT: server.endpoint,
  HF_HOME: home,
  HF_TOKEN: "",
  HF_HUB_OFFLINE: "",
  HF_HUB_CACHE: "",
  ...extra,
});
const snapshot = () =>
  path.join(home, "hub", "models--forge-test--tiny", "snapshots", FIXTURE_COMMIT);
const resolves = () => server.requests.filter((r) => r.url.includes("/resolve/"));
const explain = (run: Run) => `exit ${run.code}\nstdout: ${run.stdout}\nstderr: ${run.stderr}`;

describe("forge pull", () => {
  it("downloads a model into the hub cache, prints where and how big, and fetches nothing again", async () => {
    const first = await forge(["pull", REPO], env());
    expect(first.code, explain(first)).toBe(0);
    expect(first.stdout).toContain(`${REPO}@main (commit ${FIXTURE_COMMIT.slice(0, 12)})`);
    expect(first.stdout).toMatch(/model\.safetensors\s+3\.8 MB\s+downloaded/);
    expect(first.stdout).toContain(`in ${snapshot()}`);
    expect(first.stdout).not.toContain("README.md");
    expect(
      readFileSync(path.join(snapshot(), "model.safetensors")).equals(
        tinyFile("model.safetensors"),
      ),
    ).toBe(true);

    server.requests.length = 0;
    const second = await forge(["pull", REPO, "--json"], env());
    expect(second.code, explain(second)).toBe(0);
    const result = JSON.parse(second.stdout);
    expect(result.downloadedBytes).toBe(0);
    expect(result.files.every((f: { cached: boolean }) => f.cached)).toBe(true);
    expect(resolves()).toEqual([]);
  });

  it("resumes a file after the server cuts the connection", async () => {
    server.cutAfter("model.safetensors", 1_000_000);
    const run = await forge(["pull", REPO], env());
    expect(run.code, explain(run)).toBe(0);
    const ranges = server.requests.filter((r) => r.url.startsWith("/cdn/")).map((r) => r.range);
    expect(ranges).toHaveLength(2);
    expect(ranges[1]).toMatch(/^bytes=[1-9]\d*-$/);
    expect(run.stderr).toMatch(/model\.safetensors: the connection broke .*retrying/);
    expect(
      readFileSync(path.join(snapshot(), "model.safetensors")).equals(
        tinyFile("model.safetensors"),
      ),
    ).toBe(true);
  });

  it("a wrong checksum is exit 2 and leaves nothing half-written in the cache", async () => {
    server.corrupt("model.safetensors");
    try {
      const run = await forge(["pull", REPO], env());
      expect(run.code, explain(run)).toBe(2);
      expect(run.stderr).toMatch(
        /forge-test\/tiny: model\.safetensors does not match the hub's listing: sha256/,
      );
    } finally {
      await server.close();
      await start();
    }
    expect(existsSync(path.join(snapshot(), "model.safetensors"))).toBe(false);
    expect(existsSync(path.join(snapshot(), "config.json"))).toBe(false);
    const blobs = readdirSync(path.join(home, "hub", "models--forge-test--tiny", "blobs"));
    expect(blobs.filter((b) => b.endsWith(".incomplete"))).toEqual([]);
    // the model is not resolvable from a cut-short cache: forge would download it again
    const offline = await forge(["generate", REPO, "--user", "hi"], env({ HF_HUB_OFFLINE: "1" }));
    expect(offline.code, explain(offline)).toBe(2);
    expect(offline.stderr).toMatch(/not in the cache .*HF_HUB_OFFLINE/);
  });

  it("a repository that does not exist is exit 2 naming it; so is a missing revision", async () => {
    const missing = await forge(["pull", "forge-test/missing"], env());
    expect(missing.code, explain(missing)).toBe(2);
    expect(missing.stderr).toMatch(
      /forge-test\/missing: no such model repository at http:\/\/127\.0\.0\.1/,
    );
    const revision = await forge(["pull", REPO, "--revision", "v9"], env());
    expect(revision.code, explain(revision)).toBe(2);
    expect(revision.stderr).toContain('forge-test/tiny has no revision "v9"');
  });

  it("sends HF_TOKEN as a Bearer header; a gated model without it says so", async () => {
    const refused = await forge(["pull", "forge-test/gated"], env());
    expect(refused.code, explain(refused)).toBe(2);
    expect(refused.stderr).toMatch(
      /forge-test\/gated is a gated model \(401\): accept its terms .*set HF_TOKEN/,
    );
    server.requests.length = 0;
    const run = await forge(["pull", "forge-test/gated"], env({ HF_TOKEN: "hf_granted" }));
    expect(run.code, explain(run)).toBe(0);
    const hub = server.requests.filter((r) => !r.url.startsWith("/cdn/"));
    expect(hub.length).toBeGreaterThan(0);
    expect(hub.every((r) => r.authorization === "Bearer hf_granted")).toBe(true);
    expect(
      server.requests.filter((r) => r.url.startsWith("/cdn/")).every((r) => !r.authorization),
    ).toBe(true);
  });
});

describe("two processes pulling the same model", () => {
  /** Start a pull whose model.safetensors download is held in flight until `release()`. */
  const startHeld = async () => {
    const release = server.holdAfter("model.safetensors", 1_000_000);
    const first = startForge(["pull", REPO, "--json"], env());
    // it holds the cache's lock once its weights' download has begun
    const deadline = Date.now() + 120_000;
    while (!server.requests.some((r) => r.url.startsWith("/cdn/"))) {
      if (Date.now() > deadline) throw new Error("the first pull never started its download");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return { first, release };
  };

  it('the second waits for the first ("waiting for pid N…"), then finds everything cached', async () => {
    const { first, release } = await startHeld();
    const second = startForge(["pull", REPO, "--json"], env());
    await second.stderrMatches(new RegExp(`waiting for pid ${first.pid} \\(forge pull ${REPO}`));
    release();
    const [a, b] = await Promise.all([first.done, second.done]);
    expect(a.code, explain(a)).toBe(0);
    expect(b.code, explain(b)).toBe(0);
    expect(JSON.parse(a.stdout).downloadedBytes).toBeGreaterThan(3_000_000);
    const waited = JSON.parse(b.stdout);
    expect(waited.downloadedBytes).toBe(0);
    expect(waited.files.every((f: { cached: boolean }) => f.cached)).toBe(true);
    // the weights came down once
    expect(server.requests.filter((r) => r.url.startsWith("/cdn/"))).toHaveLength(1);
    expect(
      readFileSync(path.join(snapshot(), "model.safetensors")).equals(
        tinyFile("model.safetensors"),
      ),
    ).toBe(true);
  });

  it("--lock-timeout: past it the second gives up with exit 2 naming the holder; bad values are refused", async () => {
    const { first, release } = await startHeld();
    const second = await forge(["pull", REPO, "--lock-timeout", "1"], env());
    release();
    expect((await first.done).code).toBe(0);
    expect(second.code, explain(second)).toBe(2);
    expect(second.stderr).toContain(`waiting for pid ${first.pid}`);
    expect(second.stderr).toMatch(
      new RegExp(
        `still held by another forge process after \\d+ s: pid ${first.pid} \\(forge pull ${REPO}`,
      ),
    );
    expect(second.stderr).not.toMatch(/\n\s+at /);
    const bad = await forge(["pull", REPO, "--lock-timeout", "soon"], env());
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--lock-timeout must be a number of seconds ≥ 0; got "soon"/);
  });
});

describe("--model org/name", () => {
  it("downloads a missing model, then resolves it from the cache without the network", async () => {
    const first = await forge(
      ["generate", REPO, "--user", "What is 2 + 2?", "--max-new-tokens", "4"],
      env(),
    );
    expect(first.code, explain(first)).toBe(0);
    expect(first.stderr).toContain(
      `${REPO} is not a directory: downloading it from the Hugging Face hub`,
    );
    expect(existsSync(path.join(snapshot(), "config.json"))).toBe(true);

    server.requests.length = 0;
    // an endpoint nothing listens on: only the cache can answer
    const offline = await forge(
      ["generate", REPO, "--user", "What is 2 + 2?", "--max-new-tokens", "4"],
      env({ HF_ENDPOINT: "http://127.0.0.1:9" }),
    );
    expect(offline.code, explain(offline)).toBe(0);
    expect(offline.stdout).toBe(first.stdout);
    expect(offline.stderr).not.toContain("downloading");
    // a revision: a commit names its snapshot directly
    const pinned = await forge(
      [
        "generate",
        `${REPO}@${FIXTURE_COMMIT}`,
        "--user",
        "What is 2 + 2?",
        "--max-new-tokens",
        "4",
      ],
      env({ HF_ENDPOINT: "http://127.0.0.1:9" }),
    );
    expect(pinned.code, explain(pinned)).toBe(0);
    expect(pinned.stdout).toBe(first.stdout);
    expect(server.requests).toEqual([]);
  });

  it("a path that is neither a directory nor reachable on the hub says both, at once", async () => {
    const started = performance.now();
    const run = await forge(
      ["generate", "typo/model", "--user", "hi"],
      env({ HF_ENDPOINT: "http://no-such-host.invalid" }),
    );
    expect(run.code, explain(run)).toBe(2);
    expect(run.stderr).toMatch(
      /typo\/model is not a directory, and as a Hugging Face model: typo\/model: cannot reach http:\/\/no-such-host\.invalid: ENOTFOUND/,
    );
    expect(performance.now() - started).toBeLessThan(60_000); // not retried: a name does not resolve later
  });

  it("forge init --base-model org/name records the pulled snapshot as the base model", async () => {
    const run = await forge(
      ["init", "bot", "--base-model", REPO, "--json"],
      env(),
      undefined,
      home,
    );
    expect(run.code, explain(run)).toBe(0);
    expect(JSON.parse(run.stdout).baseModel).toBe(snapshot());
  });
});
