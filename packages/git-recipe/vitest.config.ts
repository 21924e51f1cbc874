import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "git-recipe",
    include: ["src/**/*.test.ts"],
  },
});
