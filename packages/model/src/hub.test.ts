/**
 * pullModel against a local HTTP server that serves a fixture repository the way the hub does
 * (API listing with sizes and LFS sha256, resolve URLs, a 302 to a CDN path, Range, etags).
 */
import { randomBytes } from "node:crypto";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  cachedSnapshot,
  globToRegExp,
  hubCacheDir,
  isHubRepoId,
  type PullEvent,
  pullModel,
} from "./hub.js";
import { FIXTURE_COMMIT, type HubServer, sha256Of, startHubServer } from "./testing/hub-server.js";

const REPO = "forge-test/tiny-llama";
const weights = randomBytes(300_000);
const shard = randomBytes(50_000);
const config = JSON.stringify({ model_type: "llama", hidden_size: 8 });
const tokenizer = JSON.stringify({ model: { type: "BPE", vocab: {}, merges: [] } });

const index = {
  metadata: { total_size: 2000 },
  weight_map: {
    "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
    "lm_head.weight": "model-00002-of-00002.safetensors",
  },
};
const sharded = [
  { path: "config.json", content: config },
  { path: "model.safetensors.index.json", content: JSON.stringify(index) },
  { path: "model-00001-of-00002.safetensors", content: randomBytes(1000), lfs: true },
  { path: "model-00002-of-00002.safetensors", content: randomBytes(1000), lfs: true },
  { path: "consolidated.safetensors", content: randomBytes(2000), lfs: true },
];

let server: HubServer;
let home: string;

const files = [
  { path: "config.json", content: config },
  { path: "tokenizer.json", content: tokenizer },
  { path: "generation_config.json", content: "{}" },
  { path: "model.safetensors", content: weights, lfs: true },
  { path: "extra/model-2.safetensors", content: shard, lfs: true },
  { path: "README.md", content: "# tiny" },
  { path: "pytorch_model.bin", content: randomBytes(1000), lfs: true },
];

const repos = () => [
  { id: REPO, refs: { main: FIXTURE_COMMIT, v1: FIXTURE_COMMIT }, files },
  { id: "forge-test/gated", files, gated: "granted" },
  { id: "forge-test/no-weights", files: [{ path: "config.json", content: config }] },
  { id: "forge-test/sharded", files: sharded },
  { id: "forge-test/bare", files, bareSiblings: true },
];

beforeAll(async () => {
  server = await startHubServer({ repos: repos() });
});
afterAll(() => server.close());
beforeEach(() => {
  home = mkdtempSync(path.join(os.tmpdir(), "forge-hub-"));
  server.requests.length = 0;
});
afterEach(() => rmSync(home, { recursive: true, force: true }));

const options = (extra: Record<string, unknown> = {}) => ({
  endpoint: server.endpoint,
  env: { HF_HOME: home },
  retryDelayMs: 10,
  timeoutMs: 20_000,
  ...extra,
});
const resolves = () => server.requests.filter((r) => r.url.includes("/resolve/"));
const cacheOf = () => path.join(home, "hub", "models--forge-test--tiny-llama");

describe("pullModel", () => {
  it("downloads the files a model needs into the hub's cache layout", async () => {
    const result = await pullModel(REPO, options());
    expect(result.commit).toBe(FIXTURE_COMMIT);
    expect(result.dir).toBe(path.join(cacheOf(), "snapshots", FIXTURE_COMMIT));
    expect(result.files.map((f) => f.path).sort()).toEqual([
      "config.json",
      "generation_config.json",
      "model.safetensors",
      "tokenizer.json",
    ]);
    expect(result.files.at(-1)?.path).toBe("config.json"); // last: it marks a complete snapshot
    expect(readFileSync(path.join(result.dir, "model.safetensors")).equals(weights)).toBe(true);
    expect(readFileSync(path.join(result.dir, "config.json"), "utf8")).toBe(config);
    // snapshots link to blobs named by sha256 (LFS) or git blob id
    expect(lstatSync(path.join(result.dir, "model.safetensors")).isSymbolicLink()).toBe(true);
    expect(existsSync(path.join(cacheOf(), "blobs", sha256Of(weights)))).toBe(true);
    expect(readFileSync(path.join(cacheOf(), "refs", "main"), "utf8")).toBe(FIXTURE_COMMIT);
    expect(readdirSync(path.join(cacheOf(), "blobs")).some((f) => f.endsWith(".incomplete"))).toBe(
      false,
    );
    expect(result.downloadedBytes).toBe(result.totalBytes);
    // the LFS file went through the CDN redirect, without the token
    expect(server.requests.some((r) => r.url.startsWith("/cdn/"))).toBe(true);
    expect(hubCacheDir({ HF_HOME: home })).toBe(path.join(home, "hub"));
  });

  it("fetches nothing the second time, and resolves from the cache offline", async () => {
    await pullModel(REPO, options());
    server.requests.length = 0;
    const again = await pullModel(REPO, options());
    expect(resolves()).toEqual([]);
    expect(again.downloadedBytes).toBe(0);
    expect(again.files.every((f) => f.cached)).toBe(true);

    server.requests.length = 0;
    expect(cachedSnapshot(REPO, "main", { env: { HF_HOME: home } })).toBe(again.dir);
    const offline = await pullModel(REPO, options({ env: { HF_HOME: home, HF_HUB_OFFLINE: "1" } }));
    expect(offline.dir).toBe(again.dir);
    expect(offline.files.map((f) => f.path)).toContain("model.safetensors");
    expect(server.requests).toEqual([]);
    expect(cachedSnapshot(REPO, "v2", { env: { HF_HOME: home } })).toBeUndefined();
    await expect(
      pullModel("forge-test/other", options({ env: { HF_HOME: home, HF_HUB_OFFLINE: "1" } })),
    ).rejects.toThrow(/not in the cache .* HF_HUB_OFFLINE/);
  });

  it("resumes a file after the server cuts the connection", async () => {
    server.cutAfter("model.safetensors", 100_000);
    const events: PullEvent[] = [];
    const result = await pullModel(REPO, options({ onProgress: (e: PullEvent) => events.push(e) }));
    expect(readFileSync(path.join(result.dir, "model.safetensors")).equals(weights)).toBe(true);
    const ranges = server.requests.filter((r) => r.url.startsWith("/cdn/")).map((r) => r.range);
    expect(ranges[0]).toBeUndefined();
    const start = Number(/^bytes=(\d+)-$/.exec(ranges[1] ?? "")?.[1]);
    expect(start).toBeGreaterThan(0);
    expect(start).toBeLessThanOrEqual(100_000);
    expect(events.some((e) => e.type === "retry")).toBe(true);
    // only the missing part came again
    expect(result.downloadedBytes).toBe(result.totalBytes);
  });

  it("abandons a stalled download after timeoutMs and resumes it", async () => {
    server.stallAfter("model.safetensors", 70_000);
    const events: PullEvent[] = [];
    const result = await pullModel(
      REPO,
      options({ timeoutMs: 1500, onProgress: (e: PullEvent) => events.push(e) }),
    );
    expect(readFileSync(path.join(result.dir, "model.safetensors")).equals(weights)).toBe(true);
    expect(events.find((e) => e.type === "retry")).toMatchObject({
      reason: "the download stalled",
    });
    const ranges = server.requests.filter((r) => r.url.startsWith("/cdn/")).map((r) => r.range);
    expect(ranges[1]).toMatch(/^bytes=[1-9]\d*-$/);
  });

  it("resumes in a later run from the .incomplete file a failed run left", async () => {
    server.cutAfter("model.safetensors", 120_000);
    await expect(pullModel(REPO, options({ retries: 0 }))).rejects.toMatchObject({
      code: "E_IO",
      message: expect.stringMatching(/model\.safetensors .*run forge pull again to resume/),
    });
    const incomplete = path.join(cacheOf(), "blobs", `${sha256Of(weights)}.incomplete`);
    expect(statSync(incomplete).size).toBeGreaterThan(0);
    // nothing half-written in the snapshot; no config.json, so not a complete snapshot
    expect(cachedSnapshot(REPO, "main", { env: { HF_HOME: home } })).toBeUndefined();
    expect(existsSync(path.join(cacheOf(), "snapshots", FIXTURE_COMMIT, "model.safetensors"))).toBe(
      false,
    );
    server.requests.length = 0;
    const result = await pullModel(REPO, options());
    expect(readFileSync(path.join(result.dir, "model.safetensors")).equals(weights)).toBe(true);
    const range = server.requests.find((r) => r.url.startsWith("/cdn/"))?.range;
    expect(range).toMatch(/^bytes=[1-9]\d*-$/);
    expect(existsSync(incomplete)).toBe(false);
  });

  it("refuses a file whose sha256 does not match, keeping nothing of it", async () => {
    server.corrupt("model.safetensors");
    try {
      await expect(pullModel(REPO, options())).rejects.toMatchObject({
        code: "E_INPUT",
        category: "input",
        message: expect.stringMatching(/model\.safetensors does not match .*sha256/),
      });
    } finally {
      // corruption stays on for this server: restart it clean for the other tests
      await server.close();
      server = await startHubServer({ repos: repos() });
    }
    const blobs = readdirSync(path.join(cacheOf(), "blobs"));
    expect(blobs.filter((f) => f.includes(sha256Of(weights)))).toEqual([]);
    expect(existsSync(path.join(cacheOf(), "snapshots", FIXTURE_COMMIT, "model.safetensors"))).toBe(
      false,
    );
  });

  it("retries a 5xx, then succeeds", async () => {
    server.failWith("tokenizer.json", 503, 2);
    const result = await pullModel(REPO, options());
    expect(readFileSync(path.join(result.dir, "tokenizer.json"), "utf8")).toBe(tokenizer);
    expect(resolves().filter((r) => r.url.endsWith("/tokenizer.json"))).toHaveLength(3);
  });

  it("names a missing repository, revision, gated model, and a repository without safetensors", async () => {
    await expect(pullModel("forge-test/nope", options())).rejects.toMatchObject({
      code: "E_INPUT",
      message: expect.stringMatching(/forge-test\/nope: no such model repository/),
    });
    await expect(pullModel(REPO, options({ revision: "v9" }))).rejects.toThrow(
      /forge-test\/tiny-llama has no revision "v9"/,
    );
    await expect(pullModel("forge-test/gated", options())).rejects.toThrow(
      /gated model \(401\): accept its terms .*HF_TOKEN/,
    );
    await expect(pullModel("forge-test/gated", options({ token: "wrong" }))).rejects.toThrow(
      /gated model \(403\)/,
    );
    await expect(pullModel("forge-test/no-weights", options())).rejects.toThrow(
      /has no safetensors weights/,
    );
    await expect(pullModel("../etc", options())).rejects.toThrow(/not a hub model id/);
  });

  it("sends HF_TOKEN as a Bearer header to the hub, never to the CDN", async () => {
    const result = await pullModel(
      "forge-test/gated",
      options({ env: { HF_HOME: home, HF_TOKEN: "granted" } }),
    );
    expect(existsSync(path.join(result.dir, "model.safetensors"))).toBe(true);
    const hub = server.requests.filter((r) => !r.url.startsWith("/cdn/"));
    expect(hub.length).toBeGreaterThan(0);
    expect(hub.every((r) => r.authorization === "Bearer granted")).toBe(true);
    expect(
      server.requests.filter((r) => r.url.startsWith("/cdn/")).every((r) => !r.authorization),
    ).toBe(true);
  });

  it("downloads what --include globs select, and a tag as its revision", async () => {
    const result = await pullModel(
      REPO,
      options({ include: ["**/*.safetensors", "README.md"], revision: "v1" }),
    );
    expect(result.files.map((f) => f.path).sort()).toEqual([
      "README.md",
      "extra/model-2.safetensors",
      "model.safetensors",
    ]);
    expect(readFileSync(path.join(result.dir, "extra", "model-2.safetensors")).equals(shard)).toBe(
      true,
    );
    expect(readFileSync(path.join(cacheOf(), "refs", "v1"), "utf8")).toBe(FIXTURE_COMMIT);
  });

  it("refuses to write a repository another live process is pulling", async () => {
    const lock = path.join(
      home,
      "hub",
      ".locks",
      "models--forge-test--tiny-llama",
      "forge-pull.lock",
    );
    mkdirSync(path.dirname(lock), { recursive: true });
    const holder = { pid: process.pid, startedAt: new Date().toISOString(), command: "forge pull" };
    writeFileSync(lock, JSON.stringify(holder));
    await expect(pullModel(REPO, options({ lockTimeoutMs: 0 }))).rejects.toThrow(
      /held by another forge process/,
    );
    // waiting: it says whom it waits for, looks again, and gives up at the timeout naming the holder
    const events: PullEvent[] = [];
    await expect(
      pullModel(
        REPO,
        options({ lockTimeoutMs: 300, onProgress: (e: PullEvent) => events.push(e) }),
      ),
    ).rejects.toThrow(
      new RegExp(
        `still held by another forge process after \\d+ s: pid ${process.pid} \\(forge pull`,
      ),
    );
    expect(events).toEqual([
      { type: "waiting", pid: process.pid, command: "forge pull", since: holder.startedAt },
    ]);
    expect(resolves()).toEqual([]);
    // the holder finishing (its lock gone) lets a waiting pull through
    const waiting = pullModel(REPO, options({ lockTimeoutMs: 60_000 }));
    setTimeout(() => rmSync(lock), 300);
    expect((await waiting).files.length).toBeGreaterThan(0);
  });

  it("downloads a sharded checkpoint's index first, then only the shards it names", async () => {
    const events: PullEvent[] = [];
    const result = await pullModel(
      "forge-test/sharded",
      options({ onProgress: (e: PullEvent) => events.push(e) }),
    );
    expect(result.files.map((f) => f.path)).toEqual([
      "model.safetensors.index.json",
      "model-00001-of-00002.safetensors",
      "model-00002-of-00002.safetensors",
      "config.json",
    ]);
    expect(server.requests.some((r) => r.url.endsWith("/consolidated.safetensors"))).toBe(false);
    const listed = events.find((e) => e.type === "listed");
    expect(listed?.type === "listed" && listed.bytes).toBe(result.totalBytes);
    expect(result.totalBytes).toBe(result.files.reduce((sum, f) => sum + f.size, 0));
  });

  it("takes sizes and hashes from the paged tree API when the revision listing names files only", async () => {
    const result = await pullModel("forge-test/bare", options({ include: ["**"] }));
    expect(result.files).toHaveLength(files.length);
    const pages = server.requests.filter((r) => r.url.includes("/tree/"));
    expect(pages.length).toBeGreaterThan(2); // three entries a page
    expect(result.totalBytes).toBe(result.files.reduce((sum, f) => sum + f.size, 0));
    const blob = path.join(home, "hub", "models--forge-test--bare", "blobs", sha256Of(weights));
    expect(readFileSync(blob).equals(weights)).toBe(true); // named by the LFS oid: it was checked
  });

  it("starts over from an .incomplete file longer than the file", async () => {
    const blobs = path.join(cacheOf(), "blobs");
    mkdirSync(blobs, { recursive: true });
    writeFileSync(path.join(blobs, `${sha256Of(weights)}.incomplete`), randomBytes(400_000));
    const result = await pullModel(REPO, options({ retries: 0 }));
    expect(readFileSync(path.join(result.dir, "model.safetensors")).equals(weights)).toBe(true);
  });

  it("starts over when the server answers a Range request with the whole file", async () => {
    server.ignoreRange("model.safetensors");
    const blobs = path.join(cacheOf(), "blobs");
    mkdirSync(blobs, { recursive: true });
    writeFileSync(path.join(blobs, `${sha256Of(weights)}.incomplete`), weights.subarray(0, 1000));
    let progress = 0;
    const result = await pullModel(
      REPO,
      options({
        include: ["model.safetensors"],
        onProgress: (e: PullEvent) => {
          if (e.type === "file-start") progress += e.resumeFrom;
          if (e.type === "bytes") progress += e.bytes;
          if (e.type === "discarded") progress -= e.bytes;
        },
      }),
    );
    expect(readFileSync(path.join(result.dir, "model.safetensors")).equals(weights)).toBe(true);
    expect(progress).toBe(weights.length); // the discarded prefix is not counted twice
    expect(server.requests.find((r) => r.url.startsWith("/cdn/"))?.range).toBe("bytes=1000-");
  });

  it("never reuses a snapshot file of the wrong size", async () => {
    const snapshot = path.join(cacheOf(), "snapshots", FIXTURE_COMMIT);
    mkdirSync(snapshot, { recursive: true });
    writeFileSync(path.join(snapshot, "tokenizer.json"), "{}");
    const result = await pullModel(REPO, options());
    expect(readFileSync(path.join(result.dir, "tokenizer.json"), "utf8")).toBe(tokenizer);
  });
});

describe("hub ids and globs", () => {
  it("tells hub ids from paths", () => {
    expect(isHubRepoId("HuggingFaceTB/SmolLM2-135M-Instruct")).toBe(true);
    expect(isHubRepoId("org/name@main")).toBe(true);
    for (const text of ["./a", "a/b/c", "../a", "a", "/a/b", "a/..", "a--b/c", "a/b@"])
      expect(isHubRepoId(text)).toBe(false);
  });

  it("finds the cache where the hub's tools do", () => {
    expect(hubCacheDir({ HF_HUB_CACHE: "/c", HF_HOME: "/h" })).toBe("/c");
    expect(hubCacheDir({ HF_HOME: "/h" })).toBe(path.join("/h", "hub"));
    expect(hubCacheDir({ XDG_CACHE_HOME: "/x" })).toBe(path.join("/x", "huggingface", "hub"));
    expect(hubCacheDir({})).toBe(path.join(os.homedir(), ".cache", "huggingface", "hub"));
  });

  it("matches globs within and across segments", () => {
    expect(globToRegExp("*.safetensors").test("model.safetensors")).toBe(true);
    expect(globToRegExp("*.safetensors").test("a/model.safetensors")).toBe(false);
    expect(globToRegExp("**/*.safetensors").test("a/b/model.safetensors")).toBe(true);
    expect(globToRegExp("**/*.safetensors").test("model.safetensors")).toBe(true);
    expect(globToRegExp("model-?.bin").test("model-1.bin")).toBe(true);
  });
});
