import { defineConfig } from "tsup";

export default defineConfig({
  // `@forge/eval/stats` re-exports the main entry (CI pipelines import it by that name). Its
  // declarations then re-export index.d.ts's, so every name either entry declares exists at
  // runtime (dist.test.ts checks it).
  entry: ["src/index.ts", "src/stats.ts"],
  format: ["esm"],
  dts: true,
  clean: true,
  sourcemap: true,
  target: "node20",
});
