import { initBackend, loadModel, saveModel } from "@forge/model";
import { addThoughtTokens } from "./src/quietstar/tokens.js";
await initBackend({ backend: "wasm" });
const { model, tokenizer, forge } = await loadModel("../tiny/model");
const added = addThoughtTokens(model, tokenizer!, { start: "<|startofthought|>", end: "<|endofthought|>" });
await saveModel(added.model, process.argv[2]!, { tokenizer: added.tokenizer, forge: { ...forge, thoughtTokens: { start: added.tokens.start, end: added.tokens.end } } });
console.log(added.tokens);
