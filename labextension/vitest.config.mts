// Unit tests of the panel's model, views and formatting (`jlpm test`):
// plain TypeScript modules in a happy-dom document, no JupyterLab.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    environment: 'happy-dom',
    include: ['test/**/*.test.ts'],
    // One worker process: the CI machine has two cores, shared.
    pool: 'forks',
    poolOptions: { forks: { singleFork: true } }
  }
});
