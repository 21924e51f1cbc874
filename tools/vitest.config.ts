import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "tools",
    include: ["*.test.ts"],
    // real work on a shared 2-core machine: generous limits, never vitest's 5-second default
    testTimeout: 180_000,
    hookTimeout: 180_000,
  },
});
