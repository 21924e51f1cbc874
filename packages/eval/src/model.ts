/**
 * What the runner needs from a model, and nothing more: conversations in, replies (or
 * log-probabilities) out. @forge/eval never loads a model itself, so it installs and imports
 * without TensorFlow; anything that can answer a chat — forge's own models (`evalModel` in
 * @forge/model), a model served over HTTP, a lookup table in a test — implements `EvalModel`.
 */
import type { GenerationSpec } from "./tasks.js";

/** One message of a conversation. */
export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

/**
 * How to sample the replies of one `generate` call: a task's `generation` settings plus the
 * seed the runner derives for the batch (the run's seed, the round and the batch's position).
 */
export interface GenerateOptions extends GenerationSpec {
  /**
   * The sampling seed for this call. Same conversations + same options → same replies; at
   * temperature 0 (greedy) the seed does not matter. A model may sample the call's
   * conversations from one stream seeded with it (forge's local models do).
   */
  seed: number;
}

/** A conversation and the assistant reply whose log-probability is wanted. */
export interface LogprobRequest {
  messages: ChatMessage[];
  /** The assistant's reply, as text. */
  target: string;
}

/**
 * A model the runner can evaluate.
 *
 * - `name` is what results carry (`results.model.name`: "base", "baked", "round-2").
 * - `id` identifies the model's behaviour for the results cache and is recorded as
 *   `results.model.hash`: a hash of the weights for a local model, an endpoint + model
 *   revision for a served one. Two models with the same `id` must give the same replies: a
 *   cached result for one is used for the other. The runner reads it once per run.
 * - `generate` answers each conversation with one reply (the assistant's next turn), in
 *   order: the reply's text only — no end-of-turn marker, no special tokens.
 * - `logprobs` (optional: needed only by tasks with a `logprob` scorer) gives, per request, the
 *   log-probability of each token of `target` as the assistant's reply to `messages`,
 *   including the end-of-turn token that closes it. The runner sums them (`normalize: sum`) or
 *   averages them (`normalize: mean`, the default).
 */
export interface EvalModel {
  readonly name: string;
  readonly id: string;
  generate(conversations: readonly ChatMessage[][], options: GenerateOptions): Promise<string[]>;
  logprobs?(requests: readonly LogprobRequest[]): Promise<number[][]>;
}
