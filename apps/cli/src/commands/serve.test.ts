/**
 * `forge serve` as a real child process on 127.0.0.1 (port 0): it prints its URL and answers;
 * SIGTERM lets an in-flight streamed request finish and exits 0; a client survives a restart;
 * `forge eval run --model-url` gives the scores a local `forge eval run` gives (greedy); bad
 * flags are refused with exit 2.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { OpenAIClient } from "@forge/eval";
import { attachLora, generate, initBackend, loadModel, saveAdapter } from "@forge/model";
import { FORGE_TINY_DIR, FORGE_TINY_TASKS } from "@forge/tiny";
import * as tf from "@tensorflow/tfjs";
import { afterAll, describe, expect, it } from "vitest";
import { FORGE, forge } from "../run-cli.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "forge-serve-cli-"));
const children: ChildProcess[] = [];
afterAll(() => {
  for (const child of children) if (child.exitCode === null) child.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

interface Served {
  child: ChildProcess;
  url: string;
  port: number;
  /** Resolves with the exit code (and everything it wrote to stderr). */
  exited: Promise<{ code: number | null; stderr: string }>;
}

/** Start `forge serve` and wait for the line with its URL. */
function startServe(args: string[]): Promise<Served> {
  const child = spawn(process.execPath, [FORGE, "serve", ...args], {
    cwd: dir,
    env: { ...process.env, NO_COLOR: "1", FORGE_BACKEND: "" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  let stderr = "";
  child.stderr!.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<{ code: number | null; stderr: string }>((resolve) =>
    child.on("exit", (code) => resolve({ code, stderr })),
  );
  return new Promise((resolve, reject) => {
    let stdout = "";
    child.stdout!.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
      const match = /at (http:\/\/127\.0\.0\.1:(\d+))\/v1/.exec(stdout);
      if (match) resolve({ child, url: match[1]!, port: Number(match[2]), exited });
    });
    void exited.then(({ code }) =>
      reject(new Error(`forge serve exited ${code} before listening: ${stderr}`)),
    );
  });
}

const messages = [{ role: "user" as const, content: "Tell me a long story about the sea." }];

describe("forge serve", () => {
  it("serves, and on SIGTERM lets the in-flight request finish, then exits 0", async () => {
    const served = await startServe(["forge-tiny", "--port", "0"]);
    const client = new OpenAIClient(served.url);
    expect((await client.models()).data[0]!.id).toBe("forge-tiny");
    const response = await fetch(`${served.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ messages, max_tokens: 80, seed: 3, stream: true }),
    });
    const reader = response.body!.getReader();
    const first = await reader.read(); // in flight: the first chunk has arrived
    expect(first.done).toBe(false);
    served.child.kill("SIGTERM");
    let text = new TextDecoder().decode(first.value);
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    expect(text.trimEnd().endsWith("data: [DONE]")).toBe(true);
    const { code, stderr } = await served.exited;
    expect(code).toBe(0);
    expect(stderr).toMatch(/SIGTERM: stopping once in-flight requests finish/);
    expect(stderr).toMatch(/forge serve: stopped/);
  });

  it("a client's request survives the server restarting", async () => {
    const first = await startServe(["forge-tiny", "--port", "0"]);
    const port = first.port;
    first.child.kill("SIGTERM");
    expect((await first.exited).code).toBe(0);
    let restart: Promise<Served> | undefined;
    const client = new OpenAIClient(`http://127.0.0.1:${port}`, {
      backoffMs: 200,
      maxBackoffMs: 2000,
      maxAttempts: 60,
      onRetry: () => {
        restart ??= startServe(["forge-tiny", "--port", String(port)]);
      },
    });
    const reply = await client.chatCompletion({ messages, max_tokens: 8, seed: 1 });
    expect(reply.choices[0]!.message.role).toBe("assistant");
    expect(restart).toBeDefined();
    const second = await restart!;
    second.child.kill("SIGTERM");
    expect((await second.exited).code).toBe(0);
  });

  it("forge eval run --model-url scores a served model as a local eval does (greedy)", async () => {
    const served = await startServe(["forge-tiny", "--port", "0"]);
    const task = path.join(FORGE_TINY_TASKS, "arithmetic.yaml");
    const local = await forge(
      ["eval", "run", "forge-tiny", "--tasks", task, "--out", "local.json", "--json"],
      {},
      undefined,
      dir,
    );
    expect(local.code, local.stderr).toBe(0);
    const remote = await forge(
      ["eval", "run", "--model-url", served.url, "--tasks", task, "--out", "remote.json", "--json"],
      {},
      undefined,
      dir,
    );
    expect(remote.code, remote.stderr).toBe(0);
    const read = (file: string) => JSON.parse(readFileSync(path.join(dir, file), "utf8"));
    const [a, b] = [read("local.json"), read("remote.json")];
    expect(b.model.name).toBe("forge-tiny");
    expect(b.model.hash).toBe(`${served.url}#forge-tiny`);
    expect(b.tasks.map((t: { mean: number }) => t.mean)).toEqual(
      a.tasks.map((t: { mean: number }) => t.mean),
    );
    // item by item: the same replies and scores
    const outputs = (r: {
      tasks: { records: { id: string; output: string; score: number }[] }[];
    }) => r.tasks[0]!.records.map((item) => [item.id, item.output, item.score]);
    expect(outputs(b)).toEqual(outputs(a));
    const manifest = read("remote.manifest.json");
    expect(manifest.run.status).toBe("succeeded");
    expect(manifest.run.backend).toBe("remote");
    served.child.kill("SIGTERM");
    expect((await served.exited).code).toBe(0);
  });

  it("--adapter serves the model with a LoRA adapter applied", async () => {
    // an adapter whose B is not zero, so it changes the replies
    await initBackend({ backend: "wasm" });
    const { model, tokenizer } = await loadModel(FORGE_TINY_DIR);
    const adapter = attachLora(model, { r: 4 }, { seed: 1 });
    for (const b of adapter.b.values()) b.assign(tf.randomNormal(b.shape, 0, 0.5, "float32", 2));
    const adapterDir = path.join(dir, "adapter");
    await saveAdapter(model, adapterDir);
    const question = [{ role: "user" as const, content: "What is 2 + 3?" }];
    const ids = generate(model, [tokenizer!.promptIds(question)], {
      maxNewTokens: 12,
      temperature: 0,
      stopIds: tokenizer!.stopIds(),
      bannedIds: tokenizer!.bannedIds(),
    }).tokens[0]!;
    const local = tokenizer!.decode(
      tokenizer!.stopIds().includes(ids.at(-1)!) ? ids.slice(0, -1) : ids,
      { skipSpecial: true },
    );
    model.dispose();

    const reply = async (args: string[]) => {
      const served = await startServe(["forge-tiny", "--port", "0", ...args]);
      const answer = await new OpenAIClient(served.url).chatCompletion({
        messages: question,
        temperature: 0,
        max_tokens: 12,
      });
      served.child.kill("SIGTERM");
      expect((await served.exited).code).toBe(0);
      return answer.choices[0]!.message.content;
    };
    const adapted = await reply(["--adapter", adapterDir]);
    expect(adapted).toBe(local);
    expect(await reply([])).not.toBe(adapted);
  });

  it("refuses bad flags with exit 2 and one line", async () => {
    for (const [args, message] of [
      [["serve", "forge-tiny", "--port", "70000"], /--port must be an integer in \[0, 65535\]/],
      [["serve", "forge-tiny", "--max-batch", "0"], /--max-batch must be an integer ≥ 1/],
      [
        ["serve", "forge-tiny", "--adapter", dir],
        /is not an adapter directory: adapter_config.json is missing/,
      ],
      [["eval", "run", "forge-tiny", "--model-url", "http://x"], /not both/],
      [
        ["eval", "run", "--model-name", "m"],
        /--model-name names a served model: it needs --model-url/,
      ],
      [
        ["eval", "run", "--model-url", "http://127.0.0.1:1", "--tasks", "forge-tiny:arithmetic"],
        /GET http:\/\/127\.0\.0\.1:1\/v1\/models: cannot connect/,
      ],
    ] as const) {
      const run = await forge([...args], {}, undefined, dir);
      expect(run.code, run.stderr).toBe(2);
      expect(run.stderr).toMatch(message);
      expect(run.stderr).not.toMatch(/\n\s+at /);
    }
  });
});
