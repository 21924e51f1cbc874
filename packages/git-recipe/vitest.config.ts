import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "git-recipe",
    include: ["src/**/*.test.ts"],
    // real git and child processes on a shared 2-core machine: seconds each, more when busy
    testTimeout: 120_000,
  },
});
