import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    // Integration and end-to-end tests start tmux servers and claude processes; two cores.
    fileParallelism: true,
    maxWorkers: 2,
    minWorkers: 1
  }
})
