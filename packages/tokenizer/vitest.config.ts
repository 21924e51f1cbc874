import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "tokenizer",
    include: ["src/**/*.test.ts"],
  },
});
