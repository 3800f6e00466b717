// Shared by the browser tests: a headless Debian Chromium, a pass/fail tally, the output
// folder for screenshots.
import { chromium } from 'playwright-core';
import { mkdtempSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const base = process.env.OPSIGHT_URL ?? 'http://127.0.0.1:3000';
export const out = join(dirname(fileURLToPath(import.meta.url)), 'output');
mkdirSync(out, { recursive: true });

let passed = 0;
let failed = 0;
export function check(name, ok, detail = '') {
  if (ok) { passed++; console.log(`ok   ${name}`); }
  else { failed++; console.log(`FAIL ${name} ${detail}`); }
}

// Flags this machine's closed network needs (no background connections, no QUIC).
export async function launch() {
  return chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), 'opsight-e2e-')), {
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1440, height: 1000 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

// Prints the tally and exits non-zero when a check failed.
export function finish() {
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 ? 0 : 1);
}
