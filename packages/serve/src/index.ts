/**
 * @forge/serve: an OpenAI-compatible HTTP server over any forge model — chat completions and
 * completions (sampling, stop strings, seeds, `n`, SSE streaming, log-probabilities with up to
 * 20 alternatives), the model list, batching across concurrent clients, a bounded queue, body
 * and token limits, and a graceful close. `forge serve` is this package behind a command line.
 */
export {
  Engine,
  type EngineOptions,
  type EngineStats,
  type FinishReason,
  type Sequence,
  type SequenceSpec,
  type TokenChoice,
  type TokenLogprobs,
} from "./engine.js";
export { ServeError, type ServeErrorCode } from "./errors.js";
export { type RunningServer, type ServeOptions, type ServeStats, serve } from "./server.js";
