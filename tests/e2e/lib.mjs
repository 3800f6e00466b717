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
// Signs in (through the real sign-in form) as OPSIGHT_E2E_USER unless `user` is null.
export async function launch({ user = process.env.OPSIGHT_E2E_USER ?? 'e2e-admin',
  password = process.env.OPSIGHT_E2E_PASSWORD } = {}) {
  const context = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), 'opsight-e2e-')), {
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1440, height: 1000 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  if (user) await signIn(context, user, password);
  return context;
}

// Fills in /login in a page of its own; the session cookie then serves every page.
export async function signIn(context, user, password) {
  const page = await context.newPage();
  for (let i = 0; ; i++) {
    try { await page.goto(base + '/login', { waitUntil: 'load' }); break; } catch (e) {
      if (i > 60) throw e;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  await page.fill('input[name=username]', user);
  await page.fill('input[name=password]', password ?? '');
  await Promise.all([
    page.waitForURL((u) => !u.pathname.startsWith('/login'), { timeout: 15000 }),
    page.click('button[type=submit]'),
  ]);
  await page.close();
}

// Prints the tally and exits non-zero when a check failed.
export function finish() {
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 ? 0 : 1);
}
