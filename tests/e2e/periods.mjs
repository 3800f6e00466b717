// Browser test: any period as a deep link. Opens the overview for a month straight from its
// URL, checks the tiles' trend follows the grain and the links carry the period, refreshes
// a monthly card (the weekly one stays as it was), switches to a quarter with the picker,
// and opens a KPI page for a quarter against a year ago.
//
// Usage: OPSIGHT_URL=http://127.0.0.1:3000 node periods.mjs
import { join } from 'node:path';
import { base, out, check, launch, finish } from './lib.mjs';

const context = await launch();
try {
  const page = await context.newPage();
  const consoleErrors = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });

  await page.goto(base + '/?period=2026-10', { waitUntil: 'load' });
  await page.waitForSelector('.app[data-hydrated="true"]', { timeout: 30000 });
  const head = await page.locator('.page-head .period').innerText();
  check('a month from the URL', head.startsWith('2026-10 (2026-10-01 to 2026-10-31) vs 2026-09'), head);
  const tile = page.locator('[data-site="DAL"] a.tile[data-metric="otif"]');
  check('tile links keep the period', (await tile.getAttribute('href')) === '/kpi/DAL/otif?period=2026-10');
  check('the picker shows the month', (await page.locator('.period-picker select[name="period"]').inputValue()) === '2026-10');

  // A monthly card: refreshing it makes a monthly insight; the weekly card is untouched.
  const card = page.locator('[data-card="PHX:otif"]');
  await card.getByRole('button', { name: 'Refresh insight' }).click();
  await page.waitForFunction(() => {
    const el = document.querySelector('[data-card="PHX:otif"]');
    return el && el.getAttribute('data-insight-id');
  }, null, { timeout: 60000 });
  const text = await card.innerText();
  check('the monthly card explains the month', text.includes('for 2026-10'), text.slice(0, 300));
  await page.goto(base + '/', { waitUntil: 'load' });
  await page.waitForSelector('.app[data-hydrated="true"]', { timeout: 30000 });
  const weekly = await page.locator('[data-card="PHX:otif"]').innerText();
  check('the weekly card is not the monthly one', !weekly.includes('for 2026-10'), weekly.slice(0, 300));

  // The picker: a quarter, as a link.
  await page.locator('.period-picker select[name="period"]').selectOption('quarter');
  await Promise.all([
    page.waitForURL(/period=quarter/, { timeout: 30000 }),
    page.locator('.period-picker button').click(),
  ]);
  await page.waitForSelector('.app[data-hydrated="true"]', { timeout: 30000 });
  const q = await page.locator('.page-head .period').innerText();
  check('the picker opens the latest quarter', q.startsWith('2026-Q3'), q);

  // A KPI page for a quarter against a year ago, straight from its link.
  await page.goto(base + '/kpi/network/otif?period=2026-Q3&compare=year_ago', { waitUntil: 'load' });
  await page.waitForSelector('.app[data-hydrated="true"]', { timeout: 30000 });
  const p = await page.locator('.page-head .period').innerText();
  check('a KPI page for a quarter vs a year ago', p.startsWith('2026-Q3') && p.includes('vs 2025-Q3'), p);
  // A member of a dimension: its own figures, the period kept.
  await page.goto(base + '/kpi/DAL/otif?period=2026-10', { waitUntil: 'load' });
  await page.waitForSelector('.app[data-hydrated="true"]', { timeout: 30000 });
  const member = page.locator('.contrib table tbody td a').first();
  const name = await member.innerText();
  await Promise.all([
    page.waitForURL(/filter=/, { timeout: 30000 }),
    member.click(),
  ]);
  await page.waitForSelector('.page-head .focus', { timeout: 30000 });
  const focus = await page.locator('.page-head .focus').getAttribute('data-focus');
  check('a member link filters the page to it', focus.endsWith(`= ${name}`), `${focus} / ${name}`);
  check('the filter keeps the period', page.url().includes('period=2026-10'), page.url());
  const shown = await page.locator('.page-head .period').innerText();
  check('the filtered page is the same month', shown.startsWith('2026-10'), shown);
  check('the filtered page links to the card instead of showing it', await page.locator('.focus-card a').count() === 1);
  await page.screenshot({ path: join(out, 'periods.png'), fullPage: false });
  check('no console errors', consoleErrors.length === 0, consoleErrors.join(' | '));
} finally {
  await context.close();
}
finish();
