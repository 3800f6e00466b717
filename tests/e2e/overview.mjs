// Browser test: load the overview in headless Chromium, wait for hydration, click
// "Refresh insight" on one card and check that only that card updates, without a page
// reload; acknowledge and dismiss its next actions. Saves a screenshot to output/.
//
// Usage: OPSIGHT_URL=http://127.0.0.1:3000 node overview.mjs
// Needs Debian's chromium (CHROMIUM_PATH, default /usr/bin/chromium) and playwright-core.
import { join } from 'node:path';
import { base, out, check, launch, finish } from './lib.mjs';

const context = await launch();
try {
  const page = await context.newPage();
  const consoleErrors = [];
  const badResponses = [];
  let navigations = 0;
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('response', (r) => { if (r.status() >= 400) badResponses.push(`${r.status()} ${r.url()}`); });
  page.on('framenavigated', (f) => { if (f === page.mainFrame()) navigations++; });

  // The server may still be starting: retry the first load.
  for (let i = 0; ; i++) {
    try { await page.goto(base + '/', { waitUntil: 'load' }); break; } catch (e) {
      if (i > 60) throw e;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  await page.waitForSelector('.app[data-hydrated="true"]', { timeout: 30000 });
  check('page hydrated', true);
  await page.evaluate(() => { window.__marker = 'still-here'; });

  const card = page.locator('[data-card="DAL:otif"]');
  const other = page.locator('[data-card="ATL:otif"]');
  const before = await card.getAttribute('data-insight-id');
  const otherBefore = await other.getAttribute('data-insight-id');
  await card.getByRole('button', { name: 'Refresh insight' }).click();
  await page.waitForFunction(
    (prev) => {
      const el = document.querySelector('[data-card="DAL:otif"]');
      return el && el.getAttribute('data-insight-id') && el.getAttribute('data-insight-id') !== prev;
    },
    before,
    { timeout: 30000 },
  );
  const headline = await card.locator('.headline').innerText();
  check('card shows the new insight', /Dallas DC/.test(headline) && /RoadRunner Freight/.test(headline), headline);
  check('root causes listed', (await card.locator('.causes li').count()) > 0);
  check('next actions listed', (await card.locator('.actions li').count()) > 0);
  check('other cards untouched', (await other.getAttribute('data-insight-id')) === otherBefore);
  check('no page reload', (await page.evaluate(() => window.__marker)) === 'still-here' && navigations === 1,
    `navigations=${navigations}`);
  check('no console errors', consoleErrors.length === 0, consoleErrors.join(' | '));
  check('no failed requests', badResponses.length === 0, badResponses.join(' | '));
  // Next actions: acknowledge the first, dismiss the second with a reason; both stick.
  const first = card.locator('li[data-action="0"]');
  await first.getByRole('button', { name: 'Acknowledge' }).click();
  await first.locator('.action-state[data-state="acknowledged"]').waitFor({ timeout: 10000 });
  check('an action can be acknowledged in place', true);
  const second = card.locator('li[data-action="1"]');
  await second.getByRole('button', { name: 'Dismiss…' }).click();
  await second.locator('input.action-text').fill('Handled by the carrier review already');
  await second.locator('form.action-form button').click();
  await second.locator('.action-state[data-state="dismissed"]').waitFor({ timeout: 10000 });
  check('a dismissed action shows its reason',
    (await second.innerText()).includes('dismissed: Handled by the carrier review already'));
  await page.screenshot({ path: join(out, 'overview.png'), fullPage: false });
  await card.screenshot({ path: join(out, 'card.png') });

  // The KPI detail page renders and hydrates too.
  await page.goto(base + '/kpi/ATL/in_full', { waitUntil: 'load' });
  await page.waitForSelector('.app[data-hydrated="true"]', { timeout: 30000 });
  check('detail page shows contributions', (await page.locator('.contrib table').count()) >= 3);
  await page.screenshot({ path: join(out, 'detail.png'), fullPage: true });
} finally {
  await context.close();
}
finish();
