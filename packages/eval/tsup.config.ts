import { defineConfig } from "tsup";

export default defineConfig({
  // stats is its own entry: `@forge/eval/stats` imports no tfjs, so CI can compare result
  // files without a model.
  entry: ["src/index.ts", "src/stats.ts"],
  format: ["esm"],
  dts: true,
  clean: true,
  sourcemap: true,
  target: "node20",
});
