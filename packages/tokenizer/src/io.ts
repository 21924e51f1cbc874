/**
 * Tokenizer files on disk: `tokenizer.json` + `tokenizer_config.json` (Hugging Face), or
 * GPT-2's `vocab.json` + `merges.txt`. Writes go to a temporary file and are renamed into
 * place, so a reader never sees half a file.
 */
import { mkdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import { describeSystemError, parseJson, writeFileAtomic } from "@forge/core";
import { TokenizerError } from "./errors.js";
import { fromTokenizerJson, fromVocabJson, toTokenizerJson } from "./hf.js";
import type { Tokenizer } from "./tokenizer.js";

async function readText(file: string): Promise<string> {
  try {
    return await readFile(file, "utf8");
  } catch (error) {
    throw new TokenizerError("E_IO", `cannot read ${file}: ${describeSystemError(error)}`, {
      cause: error,
    });
  }
}

async function readJson(file: string): Promise<unknown> {
  const text = await readText(file);
  try {
    return parseJson(text, file);
  } catch (error) {
    // parseJson's message names the position without echoing the file's content
    throw new TokenizerError("E_FORMAT", (error as Error).message, { cause: error });
  }
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    () => false,
  );
}

/** `tokenizer_config.json` → chat template and the variables templates use. */
function readConfig(
  config: unknown,
  file: string,
): Pick<ConstructorParameters<typeof Tokenizer>[0], "chatTemplate" | "templateVariables"> {
  if (typeof config !== "object" || config === null) {
    throw new TokenizerError("E_FORMAT", `${file}: must be a JSON object`);
  }
  const record = config as Record<string, unknown>;
  let chatTemplate: string | undefined;
  const template = record.chat_template;
  if (typeof template === "string") chatTemplate = template;
  else if (Array.isArray(template)) {
    const named = template.find((t) => (t as { name?: string }).name === "default") ?? template[0];
    if (typeof (named as { template?: unknown })?.template !== "string") {
      throw new TokenizerError(
        "E_FORMAT",
        `${file}: chat_template list entries need a "template" string`,
      );
    }
    chatTemplate = (named as { template: string }).template;
  } else if (template !== undefined && template !== null) {
    throw new TokenizerError(
      "E_FORMAT",
      `${file}: chat_template must be a string or a list of {name, template}`,
    );
  }
  const templateVariables: Record<string, unknown> = {};
  for (const key of ["bos_token", "eos_token", "unk_token", "pad_token"]) {
    const value = record[key];
    if (typeof value === "string") templateVariables[key] = value;
    else if (typeof (value as { content?: unknown } | null)?.content === "string") {
      templateVariables[key] = (value as { content: string }).content;
    }
  }
  if (typeof record.add_bos_token === "boolean")
    templateVariables.add_bos_token = record.add_bos_token;
  return { ...(chatTemplate !== undefined ? { chatTemplate } : {}), templateVariables };
}

/**
 * Load a tokenizer from a `tokenizer.json` file, or from a directory holding `tokenizer.json`
 * or `vocab.json` + `merges.txt` (and optionally `tokenizer_config.json`).
 */
export async function loadTokenizer(location: string): Promise<Tokenizer> {
  const info = await stat(location).catch((error: NodeJS.ErrnoException) => {
    throw new TokenizerError("E_IO", `cannot read ${location}: ${describeSystemError(error)}`, {
      cause: error,
    });
  });
  const dir = info.isDirectory() ? location : path.dirname(location);
  const configFile = path.join(dir, "tokenizer_config.json");
  const config = (await exists(configFile))
    ? readConfig(await readJson(configFile), configFile)
    : {};
  let base: Tokenizer;
  if (!info.isDirectory()) {
    base = fromTokenizerJson(await readJson(location), location);
  } else if (await exists(path.join(dir, "tokenizer.json"))) {
    const file = path.join(dir, "tokenizer.json");
    base = fromTokenizerJson(await readJson(file), file);
  } else if (await exists(path.join(dir, "vocab.json"))) {
    const vocabFile = path.join(dir, "vocab.json");
    base = fromVocabJson(await readJson(vocabFile), await readText(path.join(dir, "merges.txt")), {
      source: vocabFile,
    });
  } else {
    throw new TokenizerError(
      "E_IO",
      `${dir} has neither tokenizer.json nor vocab.json + merges.txt`,
    );
  }
  if (!("chatTemplate" in config) && Object.keys(config.templateVariables ?? {}).length === 0)
    return base;
  return base.withChatTemplate(config.chatTemplate ?? base.chatTemplate, {
    ...base.templateVariables,
    ...config.templateVariables,
  });
}

/** Write `tokenizer.json` and `tokenizer_config.json` into `dir` (created if needed). */
export async function saveTokenizer(
  tokenizer: Tokenizer,
  dir: string,
): Promise<{ files: string[] }> {
  await mkdir(dir, { recursive: true }).catch((error: Error) => {
    throw new TokenizerError("E_IO", `cannot create ${dir}: ${error.message}`, { cause: error });
  });
  const tokenizerFile = path.join(dir, "tokenizer.json");
  const configFile = path.join(dir, "tokenizer_config.json");
  const addedTokensDecoder = Object.fromEntries(
    [...tokenizer.specialTokens].map(([content, id]) => [
      String(id),
      {
        content,
        lstrip: false,
        normalized: false,
        rstrip: false,
        single_word: false,
        special: true,
      },
    ]),
  );
  const config: Record<string, unknown> = {
    tokenizer_class: "PreTrainedTokenizerFast",
    clean_up_tokenization_spaces: false,
    added_tokens_decoder: addedTokensDecoder,
    ...tokenizer.templateVariables,
    ...(tokenizer.chatTemplate !== undefined ? { chat_template: tokenizer.chatTemplate } : {}),
  };
  await writeFileAtomic(tokenizerFile, `${JSON.stringify(toTokenizerJson(tokenizer), null, 2)}\n`);
  await writeFileAtomic(configFile, `${JSON.stringify(config, null, 2)}\n`);
  return { files: [tokenizerFile, configFile] };
}
