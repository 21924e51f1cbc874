import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "pipeline",
    include: ["src/**/*.test.ts"],
    // real work on a shared 2-core machine: generous limits, never vitest's 5-second default
    testTimeout: 240_000,
    hookTimeout: 240_000,
  },
});
