/** The server the load test talks to, in its own process: forge-tiny on 127.0.0.1, port 0. */
import { initBackend, loadModel } from "@forge/model";
import { FORGE_TINY_DIR } from "@forge/tiny";
import { serve } from "../src/index.js";

await initBackend();
const { model, tokenizer } = await loadModel(FORGE_TINY_DIR);
const server = await serve(model, tokenizer!, { name: "forge-tiny", port: 0, maxQueue: 1024 });
process.stdout.write(`${server.url}\n`);
process.on("SIGTERM", () => {
  void server.close().then(() => process.exit(0));
});
