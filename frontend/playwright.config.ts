import { defineConfig } from '@playwright/test';

// End-to-end tests run against a real, already-running contimg-api (which serves
// the built dashboard under /streaming). Nothing here starts or fakes a server.
//   CONTIMG_API_URL    base URL of the daemon (default http://127.0.0.1:8010)
//   CONTIMG_API_TOKEN  the daemon's bearer token (needed for the mutating tests)
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
];

export default defineConfig({
  testDir: 'e2e',
  outputDir: 'test-results',
  // The tests share one real service: run them one after another.
  fullyParallel: false,
  workers: 1,
  retries: 0,
  timeout: 90_000,
  expect: { timeout: 10_000 },
  reporter: [['list']],
  use: {
    baseURL: process.env.CONTIMG_API_URL ?? 'http://127.0.0.1:8010',
    viewport: { width: 1366, height: 768 },
    screenshot: 'only-on-failure',
    trace: 'retain-on-failure',
    browserName: 'chromium',
    launchOptions: {
      executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
      args: CHROMIUM_ARGS,
    },
  },
});
