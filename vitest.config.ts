import { defineConfig } from "vitest/config";

// One vitest process for the whole workspace: each package and app is a project with its
// own vitest.config.ts; the root run schedules every test file across one worker pool.
export default defineConfig({
  test: {
    projects: ["packages/*", "apps/*", "tools"],
  },
});
