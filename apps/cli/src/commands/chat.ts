/**
 * `forge chat <model-dir>` (an interactive REPL, or lines piped on stdin) and
 * `forge generate <model-dir> --system … --user …` (one shot).
 */
import readline from "node:readline";
import { formatTrace, thinkingReplies, thoughtTokensOf } from "@forge/baking";
import { readTextFile } from "@forge/core";
import {
  type GenerationDefaults,
  type GPT,
  generateReply,
  initBackend,
  loadModel,
} from "@forge/model";
import type { ChatMessage, Tokenizer } from "@forge/tokenizer";
import type { CAC } from "cac";
import pc from "picocolors";
import { UsageError } from "../errors.js";
import { resolveModelLocation } from "../models.js";
import { numberOption } from "../options.js";

export interface SamplingOptions {
  temperature?: string | number;
  topK?: string | number;
  topP?: string | number;
  seed?: string | number;
  maxNewTokens?: string | number;
}

export interface Sampling {
  temperature: number;
  topK?: number;
  topP?: number;
  seed: number;
  maxNewTokens: number;
}

export function resolveSampling(
  options: SamplingOptions,
  defaults: GenerationDefaults = {},
): Sampling {
  // flags are checked as flags; the model's own defaults were checked when it was loaded
  const number = (value: unknown, name: string, check: (n: number) => boolean, expected: string) =>
    numberOption(value, name, check, expected)!;
  const temperature = number(
    options.temperature ?? defaults.temperature ?? 0.7,
    "temperature",
    (n) => n >= 0,
    "≥ 0",
  );
  const topK = options.topK ?? defaults.top_k;
  const topP = options.topP ?? defaults.top_p;
  return {
    temperature,
    ...(topK !== undefined
      ? { topK: number(topK, "top-k", (n) => Number.isInteger(n) && n >= 1, "an integer ≥ 1") }
      : {}),
    ...(topP !== undefined
      ? { topP: number(topP, "top-p", (n) => n > 0 && n <= 1, "in (0, 1]") }
      : {}),
    seed: number(options.seed ?? 0, "seed", Number.isInteger, "an integer"),
    maxNewTokens: number(
      options.maxNewTokens ?? defaults.max_new_tokens ?? 64,
      "max-new-tokens",
      (n) => Number.isInteger(n) && n >= 1,
      "an integer ≥ 1",
    ),
  };
}

/** A chat model: weights and tokenizer, and a function for one assistant reply. */
export interface ChatModel {
  model: GPT;
  tokenizer: Tokenizer;
  defaults: GenerationDefaults;
}

/** A model directory, or a model id in the store (`<repo>/<bake>/<step>`). */
export async function loadChatModel(location: string): Promise<ChatModel> {
  const dir = await resolveModelLocation(location);
  await initBackend();
  const loaded = await loadModel(dir);
  if (!loaded.tokenizer) {
    loaded.model.dispose();
    throw new UsageError(
      `${dir} has no tokenizer.json; a chat model directory needs its tokenizer`,
    );
  }
  return {
    model: loaded.model,
    tokenizer: loaded.tokenizer,
    defaults: loaded.generationConfig ?? {},
  };
}

/**
 * The assistant's next reply to `messages`. The context window crops the oldest tokens. A
 * model whose tokenizer has thought tokens may think before and while it answers: `answer` is
 * the reply without its thoughts (what the conversation keeps), `shown` the same or, with
 * `showThoughts`, the reply with its thoughts in place.
 */
export function reply(
  chat: ChatModel,
  messages: ChatMessage[],
  sampling: Sampling,
  options: { showThoughts?: boolean } = {},
): { answer: string; shown: string } {
  const tokens = thoughtTokensOf(chat.tokenizer);
  if (!tokens) {
    const answer = generateReply(chat.model, chat.tokenizer, messages, sampling);
    return { answer, shown: answer };
  }
  const [trace] = thinkingReplies(
    chat.model,
    chat.tokenizer,
    [chat.tokenizer.promptIds(messages)],
    {
      tokens,
      inject: false,
      allowThoughts: true,
      points: ["start"],
      probability: 0,
      maxThoughtLength: sampling.maxNewTokens,
      samplesPerPoint: 1,
      thoughtTemperature: sampling.temperature,
      maxThoughts: 4,
      maxNewTokens: sampling.maxNewTokens,
      temperature: sampling.temperature,
      ...(sampling.topK !== undefined ? { topK: sampling.topK } : {}),
      ...(sampling.topP !== undefined ? { topP: sampling.topP } : {}),
      seed: sampling.seed,
    },
  );
  return {
    answer: trace!.answer,
    shown: formatTrace(trace!, chat.tokenizer, tokens, {
      ...(options.showThoughts ? { showThoughts: true } : {}),
    }),
  };
}

const HELP = `commands:
  /system <prompt>   set the system prompt (and start over)
  /clear             forget the conversation (keeps the system prompt)
  /status            model, context use, sampling settings
  /help              this list
  /quit              leave`;

interface SystemOptions {
  /** The prompt, or false for --no-system. */
  system?: string | false;
  systemFile?: string;
}

interface ChatCommandOptions extends SamplingOptions, SystemOptions {
  showThoughts?: boolean;
}

/**
 * The system prompt to start with: --system, else the contents of --system-file, else the
 * model's default (`system_prompt` in its generation_config.json) unless --no-system.
 */
async function startingSystem(
  options: SystemOptions,
  chat: ChatModel,
): Promise<string | undefined> {
  if (typeof options.system === "string" && options.systemFile !== undefined)
    throw new UsageError("give --system or --system-file, not both");
  if (typeof options.system === "string") return options.system;
  if (options.systemFile !== undefined) {
    const text = (await readTextFile(options.systemFile, "--system-file ")).trim();
    if (text === "") throw new UsageError(`--system-file ${options.systemFile} is empty`);
    return text;
  }
  if (options.system === false) return undefined;
  const fallback = chat.defaults.system_prompt;
  return typeof fallback === "string" ? fallback : undefined;
}

async function chatCommand(dir: string, options: ChatCommandOptions): Promise<number> {
  const chat = await loadChatModel(dir);
  const sampling = resolveSampling(options, chat.defaults);
  const interactive = Boolean(process.stdin.isTTY && process.stdout.isTTY);
  let system = await startingSystem(options, chat);
  let history: ChatMessage[] = [];
  let turn = 0;
  const out = (text: string) => process.stdout.write(`${text}\n`);
  if (interactive) out(pc.dim(`forge chat — ${dir}. /help for commands.`));
  const rl = readline.createInterface({ input: process.stdin, terminal: interactive });
  if (interactive) {
    rl.setPrompt(pc.bold("you> "));
    rl.prompt();
  }
  for await (const raw of rl) {
    const line = raw.trim();
    if (line === "") {
      if (interactive) rl.prompt();
      continue;
    }
    if (line.startsWith("/")) {
      const [command] = line.split(/\s+/);
      const argument = line.slice(command!.length).trim();
      if (command === "/quit" || command === "/exit") break;
      else if (command === "/help") out(HELP);
      else if (command === "/clear") {
        history = [];
        out("(conversation cleared)");
      } else if (command === "/system") {
        system = argument || undefined;
        history = [];
        out(system ? `(system prompt set: ${system})` : "(system prompt removed)");
      } else if (command === "/status") {
        const messages: ChatMessage[] = [
          ...(system ? [{ role: "system" as const, content: system }] : []),
          ...history,
        ];
        const used = chat.tokenizer.renderChat(messages, { addGenerationPrompt: true }).ids.length;
        out(
          `model ${dir}: ${chat.model.parameterCount} parameters, context ${used}/${chat.model.config.blockSize} tokens, ` +
            `${history.length / 2} turns, system ${system ? JSON.stringify(system) : "none"}, temperature ${sampling.temperature}`,
        );
      } else out(`unknown command ${command}; /help lists them`);
      if (interactive) rl.prompt();
      continue;
    }
    history.push({ role: "user", content: line });
    const messages: ChatMessage[] = [
      ...(system ? [{ role: "system" as const, content: system }] : []),
      ...history,
    ];
    const { answer, shown } = reply(
      chat,
      messages,
      { ...sampling, seed: sampling.seed + turn++ },
      { showThoughts: Boolean(options.showThoughts) },
    );
    history.push({ role: "assistant", content: answer });
    out(interactive ? `${pc.cyan("forge>")} ${shown}` : shown);
    if (interactive) rl.prompt();
  }
  rl.close();
  chat.model.dispose();
  return 0;
}

interface GenerateCommandOptions extends SamplingOptions, SystemOptions {
  user?: string;
  json?: boolean;
  showThoughts?: boolean;
}

async function generateCommand(dir: string, options: GenerateCommandOptions): Promise<number> {
  if (options.user === undefined) throw new UsageError("--user <text> is required");
  const chat = await loadChatModel(dir);
  const sampling = resolveSampling(options, chat.defaults);
  const system = await startingSystem(options, chat);
  const messages: ChatMessage[] = [
    ...(system ? [{ role: "system" as const, content: system }] : []),
    { role: "user", content: String(options.user) },
  ];
  const { answer, shown } = reply(chat, messages, sampling, {
    showThoughts: Boolean(options.showThoughts),
  });
  process.stdout.write(
    options.json
      ? `${JSON.stringify({ messages, reply: answer, ...(options.showThoughts ? { withThoughts: shown } : {}), sampling })}\n`
      : `${shown}\n`,
  );
  chat.model.dispose();
  return 0;
}

function samplingFlags(command: ReturnType<CAC["command"]>) {
  return command
    .option(
      "--temperature <t>",
      "Sampling temperature; 0 = greedy (default: the model's generation_config, else 0.7)",
    )
    .option("--top-k <k>", "Keep the k most likely tokens")
    .option("--top-p <p>", "Nucleus sampling threshold")
    .option("--seed <n>", "Sampling seed (default 0)")
    .option("--max-new-tokens <n>", "Longest reply in tokens (default 64)")
    .option(
      "--show-thoughts",
      "Show a thinking model's thoughts (between its thought tokens) in the reply; hidden by default",
    );
}

export function registerChat(cli: CAC): void {
  samplingFlags(
    cli.command(
      "<model-dir>",
      "Chat with a model: type messages; /help for commands; stdin may be piped",
    ),
  )
    .option("--system <prompt>", "Start with this system prompt")
    .option("--system-file <file>", "Start with the system prompt in this file")
    .option("--no-system", "Start without the model's default system prompt")
    .example("forge chat forge-tiny --system 'You are a pirate.'")
    .example("printf 'What is 2 + 3?\\n/quit\\n' | forge chat forge-tiny")
    .action((dir: string, options: ChatCommandOptions) => chatCommand(dir, options));
}

export function registerGenerate(cli: CAC): void {
  samplingFlags(cli.command("<model-dir>", "One reply to one user message"))
    .option("--system <prompt>", "System prompt")
    .option("--system-file <file>", "Read the system prompt from a file")
    .option("--no-system", "Without the model's default system prompt")
    .option("--user <text>", "The user message")
    .option("--json", "Print {messages, reply, sampling}")
    .example(
      "forge generate forge-tiny --system 'You are a robot.' --user 'What is the capital of France?'",
    )
    .action((dir: string, options: GenerateCommandOptions) => generateCommand(dir, options));
}
