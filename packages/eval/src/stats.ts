/**
 * `@forge/eval/stats`, kept for the CI pipelines that import it: the whole package, as
 * `@forge/eval` is. It was once the part without TensorFlow; now no part of @forge/eval
 * imports TensorFlow.
 */
export * from "./index.js";
