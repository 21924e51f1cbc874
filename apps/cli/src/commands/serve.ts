/**
 * `forge serve <model>`: an OpenAI-compatible HTTP server (@forge/serve) over any model forge
 * loads — forge-tiny, a model directory, a bake output (its base with the adapter), a model in
 * the store, a Hugging Face id — optionally with a LoRA adapter directory on top. Binds
 * 127.0.0.1 unless --host says otherwise; SIGINT/SIGTERM stop accepting, let in-flight
 * requests finish, then exit 0.
 */
import { interruptOnSignals } from "@forge/core";
import { initBackend, loadAdapter } from "@forge/model";
import { serve } from "@forge/serve";
import type { CAC } from "cac";
import { loadEvalModel } from "../models.js";
import { integerOption, numberOption } from "../options.js";

interface ServeCommandOptions {
  port?: string;
  host?: string;
  adapter?: string;
  name?: string;
  maxBatch?: string;
  maxQueue?: string;
  maxTokens?: string;
  maxBodyBytes?: string;
}

async function serveCommand(location: string, options: ServeCommandOptions): Promise<number> {
  const port =
    numberOption(
      options.port,
      "port",
      (n) => Number.isInteger(n) && n >= 0 && n <= 65535,
      "an integer in [0, 65535] (0: any free port)",
    ) ?? 8000;
  const settings = {
    maxBatch: integerOption(options.maxBatch, "max-batch", { minimum: 1, fallback: 16 }),
    maxQueue: integerOption(options.maxQueue, "max-queue", { minimum: 1, fallback: 64 }),
    maxTokens: integerOption(options.maxTokens, "max-tokens", { minimum: 1, fallback: 512 }),
    maxBodyBytes: integerOption(options.maxBodyBytes, "max-body-bytes", {
      minimum: 1,
      fallback: 1 << 20,
    }),
  };
  // signals are ours before the URL is printed: a client that reads it may stop us at once
  const interrupt = interruptOnSignals((message) =>
    process.stderr.write(
      `${message.replace("after the current step", "once in-flight requests finish")}\n`,
    ),
  );
  const stopped = new Promise<void>((resolve) =>
    interrupt.signal.addEventListener("abort", () => resolve()),
  );
  await initBackend();
  const loaded = await loadEvalModel(location);
  if (options.adapter !== undefined) await loadAdapter(loaded.model, String(options.adapter));
  const name = options.name !== undefined ? String(options.name) : loaded.name;
  const server = await serve(loaded.model, loaded.tokenizer, {
    name,
    host: options.host !== undefined ? String(options.host) : "127.0.0.1",
    port,
    ...settings,
  });
  process.stdout.write(`forge serve: ${name} at ${server.url}/v1 (Ctrl-C to stop)\n`);
  if (!interrupt.signal.aborted) await stopped;
  await server.close();
  interrupt.dispose();
  loaded.model.dispose();
  process.stderr.write("forge serve: stopped\n");
  return 0;
}

export function register(cli: CAC): void {
  cli
    .command(
      "<model>",
      "Serve a model over the OpenAI API (POST /v1/chat/completions, /v1/completions; GET /v1/models)",
    )
    .option("--port <port>", "Port to listen on; 0 picks a free one (default 8000)")
    .option("--host <host>", "Address to bind (default 127.0.0.1: this machine only)")
    .option("--adapter <dir>", "A LoRA adapter directory (adapter_config.json) to apply")
    .option("--name <name>", "The model's name in /v1/models and replies (default the model's)")
    .option("--max-batch <n>", "Most sequences in one forward pass (default 16)")
    .option("--max-queue <n>", "Most sequences waiting; more are answered 429 (default 64)")
    .option("--max-tokens <n>", "Largest max_tokens a request may ask for (default 512)")
    .option("--max-body-bytes <n>", "Largest request body; larger is answered 413 (default 1 MiB)")
    .example("forge serve forge-tiny --port 8000")
    .example("forge serve HuggingFaceTB/SmolLM2-135M-Instruct --adapter bakes/pirate")
    .action((model: string, options: ServeCommandOptions) => serveCommand(model, options));
}
