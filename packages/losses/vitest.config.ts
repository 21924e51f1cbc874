import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "losses",
    include: ["src/**/*.test.ts"],
    // real work on a shared 2-core machine: generous limits, never vitest's 5-second default
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
