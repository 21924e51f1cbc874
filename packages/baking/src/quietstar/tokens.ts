/**
 * Thought tokens: a model and tokenizer that lack them get both (new special ids after the last,
 * new embedding — and so output — rows started from existing embeddings); a model that has them
 * keeps them; a model that already thinks with *other* tokens is refused, since its thoughts
 * would be written with tokens the configuration does not know.
 */
import { type GPT, growVocabulary } from "@forge/model";
import { THOUGHT_TOKENS, type Tokenizer } from "@forge/tokenizer";
import { BakingError } from "../errors.js";

/** A model's thought tokens and their ids. */
export interface ThoughtTokens {
  start: string;
  end: string;
  startId: number;
  endId: number;
}

export interface AddThoughtTokensOptions {
  start: string;
  end: string;
  /** Text whose tokens' mean embedding starts both new rows (default "—", as Quiet-STaR). */
  init?: string;
  /**
   * The thought tokens the model's forge.json records (`thoughtTokens`), when it has a record:
   * tokens forge added earlier.
   */
  recorded?: { start?: unknown; end?: unknown };
  /** The model's directory, for messages. */
  source?: string;
}

export interface WithThoughtTokens {
  /** The model (a new one when rows were added; the caller disposes of the old one). */
  model: GPT;
  tokenizer: Tokenizer;
  tokens: ThoughtTokens;
  /** True when the tokens were added here; false when the model had them. */
  added: boolean;
}

/** The thought tokens a tokenizer carries as special tokens, when it has both. */
export function thoughtTokensOf(
  tokenizer: Tokenizer,
  names: { start: string; end: string } = THOUGHT_TOKENS,
): ThoughtTokens | undefined {
  const startId = tokenizer.specialTokens.get(names.start);
  const endId = tokenizer.specialTokens.get(names.end);
  return startId !== undefined && endId !== undefined
    ? { start: names.start, end: names.end, startId, endId }
    : undefined;
}

/**
 * Give `model` and `tokenizer` the thought tokens `options.start` and `options.end`. Already
 * there: reused (ids reported, nothing changes). Absent: added — the tokenizer gains two special
 * tokens after its last id, the model two rows of `wte` (its output layer is tied to it), each
 * the mean embedding of `options.init`'s tokens. Refused (bad input, naming both pairs): a
 * model whose forge.json records other thought tokens, or whose tokenizer has forge's default
 * thought tokens while others are asked for, or has only one of the two.
 */
export function addThoughtTokens(
  model: GPT,
  tokenizer: Tokenizer,
  options: AddThoughtTokensOptions,
): WithThoughtTokens {
  const source = options.source ?? "the model";
  const asked = `${options.start} and ${options.end}`;
  const recorded = options.recorded;
  if (
    recorded &&
    (recorded.start !== undefined || recorded.end !== undefined) &&
    (recorded.start !== options.start || recorded.end !== options.end)
  )
    throw new BakingError(
      "E_INPUT",
      `${source} already has the thought tokens ${String(recorded.start)} and ${String(recorded.end)} (forge.json thoughtTokens); the configuration asks for ${asked}: use the model's own (startThoughtToken, endThoughtToken) or a model without thought tokens`,
    );
  const defaults = thoughtTokensOf(tokenizer);
  if (defaults && (defaults.start !== options.start || defaults.end !== options.end))
    throw new BakingError(
      "E_INPUT",
      `${source} already has the thought tokens ${defaults.start} (${defaults.startId}) and ${defaults.end} (${defaults.endId}); the configuration asks for ${asked}: use the model's own or a model without thought tokens`,
    );
  const has = [options.start, options.end].filter((t) => tokenizer.specialTokens.has(t));
  if (has.length === 1) {
    const missing = has[0] === options.start ? options.end : options.start;
    throw new BakingError(
      "E_INPUT",
      `${source}'s tokenizer has ${has[0]} but not ${missing}; a thought needs both tokens`,
    );
  }
  const existing = thoughtTokensOf(tokenizer, options);
  if (existing) {
    const top = Math.max(existing.startId, existing.endId);
    if (top >= model.config.vocabSize)
      throw new BakingError(
        "E_INPUT",
        `${source}: the thought token id ${top} is outside the model's vocabulary of ${model.config.vocabSize}`,
      );
    return { model, tokenizer, tokens: existing, added: false };
  }
  const init = tokenizer.encode(options.init ?? "—");
  if (init.length === 0)
    throw new BakingError("E_INPUT", "thoughtInit encodes to no tokens; give it some text");
  // New ids follow the larger of the two vocabularies (a model may have more rows than ids).
  const first = Math.max(model.config.vocabSize, tokenizer.vocabSize);
  const pad = first - model.config.vocabSize;
  const grown = growVocabulary(model, [...Array.from({ length: pad }, () => init), init, init]);
  const withTokens = tokenizer.withSpecialTokens([options.start, options.end], first);
  return {
    model: grown,
    tokenizer: withTokens,
    tokens: { start: options.start, end: options.end, startId: first, endId: first + 1 },
    added: true,
  };
}
