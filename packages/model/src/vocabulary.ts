/**
 * Growing a model's vocabulary: new token ids get new rows of the token embedding `wte` — and
 * so of the output layer, which is tied to it. A new row starts as the mean of existing rows
 * (the embeddings of tokens whose meaning it should begin from), never as zeros: a zero row
 * gives the token a logit of exactly 0 at every position, and an input embedding that carries
 * nothing.
 */
import * as tf from "@tensorflow/tfjs";
import { ModelError } from "./errors.js";
import { GPT } from "./gpt.js";

/**
 * A copy of `model` with `init.length` more token ids, numbered from its `vocabSize` up; row
 * `vocabSize + i` of `wte` is the mean of the rows `init[i]` names. Every other parameter is
 * copied unchanged, so the old ids compute exactly what they computed before. The original
 * model is left as it is (the caller disposes of either). A model with a LoRA adapter attached
 * is refused: grow the base, then attach.
 */
export function growVocabulary(model: GPT, init: readonly (readonly number[])[]): GPT {
  if (model.lora)
    throw new ModelError(
      "E_INPUT",
      "growVocabulary needs a model without a LoRA adapter: grow the base, then attach one",
    );
  const { vocabSize: V, nEmbd: C } = model.config;
  if (init.length === 0) throw new ModelError("E_INPUT", "growVocabulary: no rows to add");
  init.forEach((ids, row) => {
    if (ids.length === 0)
      throw new ModelError(
        "E_INPUT",
        `growVocabulary: new row ${row} names no existing ids to start from`,
      );
    for (const id of ids)
      if (!Number.isInteger(id) || id < 0 || id >= V)
        throw new ModelError(
          "E_INPUT",
          `growVocabulary: new row ${row} starts from id ${id}, which is not in the vocabulary (0..${V - 1})`,
        );
  });
  const old = model.param("wte.weight").dataSync() as Float32Array;
  const wte = new Float32Array((V + init.length) * C);
  wte.set(old);
  init.forEach((ids, row) => {
    const target = (V + row) * C;
    for (const id of ids)
      for (let c = 0; c < C; c++) wte[target + c]! += old[id * C + c]! / ids.length;
  });
  const tensors = new Map<string, tf.Tensor>();
  try {
    for (const [name, variable] of model.params)
      tensors.set(
        name,
        name === "wte.weight" ? tf.tensor2d(wte, [V + init.length, C]) : tf.clone(variable),
      );
    return GPT.fromTensors({ ...model.config, vocabSize: V + init.length }, tensors);
  } finally {
    tf.dispose([...tensors.values()]);
  }
}
