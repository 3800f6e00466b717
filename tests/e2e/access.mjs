// Browser test of roles and CSRF: a viewer sees no controls it may not use and is refused
// the admin page; a page on another origin that auto-submits a form to Opsight (with the
// viewer's or an admin's cookie riding along) is refused and changes nothing; signing out
// ends the session.
//
// Usage: OPSIGHT_URL=… OPSIGHT_E2E_VIEWER=… OPSIGHT_E2E_PASSWORD=… node access.mjs
import { createServer } from 'node:http';
import { base, check, launch, finish } from './lib.mjs';

const password = process.env.OPSIGHT_E2E_PASSWORD;
const viewer = await launch({ user: process.env.OPSIGHT_E2E_VIEWER ?? 'e2e-viewer', password });
const admin = await launch({ password });

// A page on another origin (another port: same site, other origin) whose form posts to
// Opsight's "send digest" server function as soon as it loads.
const evil = createServer((req, res) => {
  res.setHeader('content-type', 'text/html');
  res.end(`<!DOCTYPE html><form id="f" method="post" action="${base}/api/send_digest"></form>
    <script>document.getElementById('f').submit()</script>`);
});
await new Promise((r) => evil.listen(0, '127.0.0.1', r));
const evilUrl = `http://127.0.0.1:${evil.address().port}/`;

try {
  const page = await viewer.newPage();
  const consoleErrors = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  await page.goto(base + '/', { waitUntil: 'load' });
  await page.waitForSelector('.app[data-hydrated="true"]', { timeout: 30000 });
  check('the viewer is shown as signed in', (await page.locator('.me').innerText()).includes('viewer'));
  check('cards are shown to a viewer', (await page.locator('[data-card]').count()) > 10);
  check('no refresh buttons for a viewer', (await page.locator('button.refresh').count()) === 0);
  check('no action buttons for a viewer', (await page.locator('.action-buttons').count()) === 0);
  check('no Admin link for a viewer', (await page.locator('nav a[href="/admin"]').count()) === 0);
  await page.goto(base + '/rules', { waitUntil: 'load' });
  await page.waitForSelector('.app[data-hydrated="true"]', { timeout: 30000 });
  check('rules are readable but not editable', (await page.locator('table').count()) > 0
    && (await page.locator('button.edit, button.add').count()) === 0);
  check('no console errors for the viewer', consoleErrors.length === 0, consoleErrors.join(' | '));
  // (The refusals below log "Failed to load resource: 403" in the console, as they should.)
  const denied = await page.goto(base + '/admin');
  check('the admin page is refused to a viewer (403)', denied.status() === 403, `${denied.status()}`);
  // The server refuses what the page hides: a refresh the viewer calls directly.
  const direct = await page.evaluate(async (b) => (await fetch(b + '/api/v1/insights/refresh', {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ site: 'DAL', metric: 'otif' }) })).status, base);
  check('a hidden action called directly is refused (403)', direct === 403, `${direct}`);

  // CSRF: the admin's browser visits the other page; its form post is refused.
  const count = async () => (await (await admin.request.get(base + '/api/v1/notifications?limit=500')).json()).notifications.length;
  const before = await count();
  const attack = await admin.newPage();
  const refused = attack.waitForResponse((r) => r.url().includes('/api/send_digest'), { timeout: 15000 });
  await attack.goto(evilUrl);
  const response = await refused;
  check('a cross-origin form post is refused (403)', response.status() === 403, `${response.status()}`);
  const after = await count();
  check('and nothing was sent', after === before, `${before} → ${after}`);
  // The same action from Opsight's own page works.
  const own = await admin.newPage();
  await own.goto(base + '/notifications', { waitUntil: 'load' });
  await own.waitForSelector('.app[data-hydrated="true"]', { timeout: 30000 });
  await own.getByRole('button', { name: 'Send digest now' }).click();
  let sent = before;
  for (let i = 0; i < 50 && sent === before; i++) {
    await new Promise((r) => setTimeout(r, 200));
    sent = await count();
  }
  check('the same post from Opsight itself goes through', sent === before + 1, `${before} → ${sent}`);

  // Admin page: users, tokens and the audit log are listed; no secret is.
  await own.goto(base + '/admin', { waitUntil: 'load' });
  await own.waitForSelector('.app[data-hydrated="true"]', { timeout: 30000 });
  const html = await own.content();
  check('the admin page lists users', (await own.locator('tr[data-user]').count()) >= 2);
  check('no password hash on the admin page', !html.includes('$argon2'));
  await own.fill('input[name=token-name]', 'e2e-bot');
  await own.getByRole('button', { name: 'Create token' }).click();
  const secret = (await own.locator('.new-token code').innerText({ timeout: 10000 })).trim();
  check('a new token is shown once', /^opsight_[0-9a-f]{64}$/.test(secret), secret);
  await own.reload({ waitUntil: 'load' });
  check('and not again after a reload', !(await own.content()).includes(secret));
  check('the token is listed by its prefix', (await own.locator('tr[data-token]').count()) >= 1);
  check('its creation is in the audit log', (await own.locator('.audit-entry', { hasText: 'token.create' }).count()) >= 1);

  // Sign out: the next page asks to sign in again.
  await page.goto(base + '/', { waitUntil: 'load' });
  await page.waitForSelector('.app[data-hydrated="true"]', { timeout: 30000 });
  await Promise.all([page.waitForURL((u) => u.pathname === '/login'), page.click('button.signout')]);
  await page.goto(base + '/runs');
  check('after signing out, pages ask to sign in', new URL(page.url()).pathname === '/login');
} finally {
  evil.close();
  await viewer.close();
  await admin.close();
}
finish();
