// Browser test: the data sources page. Syncs a CSV drop folder ("drop") with "Sync now" and
// watches its outcome appear in place; syncs a PostgreSQL source whose server is down
// ("down"), sees the failure named on the page and the overview's warning that its data
// never arrived. The source's password (in its connection string, in the server's
// environment) is in no response the browser gets.
//
// Usage: OPSIGHT_URL=http://127.0.0.1:3000 E2E_SOURCE_SECRET=... node sources.mjs
import { join } from 'node:path';
import { base, out, check, launch, finish } from './lib.mjs';

const secret = process.env.E2E_SOURCE_SECRET || 'no-secret-given';
const context = await launch();
try {
  const page = await context.newPage();
  const consoleErrors = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  const bodies = [];
  page.on('response', async (r) => { try { bodies.push(await r.text()); } catch { /* redirects */ } });
  const settled = (name, state) => page.waitForFunction(([n, s]) => {
    const el = document.querySelector(`tr[data-source="${n}"]`);
    return el && el.classList.contains(s);
  }, [name, state], { timeout: 60000 });

  await page.goto(base + '/sources', { waitUntil: 'load' });
  await page.waitForSelector('.app[data-hydrated="true"]', { timeout: 30000 });
  const drop = page.locator('tr[data-source="drop"]');
  const listed = await drop.innerText();
  check('the drop folder is listed with what it reads', listed.includes('csv · files *.csv') && listed.includes('never synced'), listed);
  await drop.getByRole('button', { name: 'Sync now' }).click();
  await settled('drop', 'ok');
  const synced = await drop.innerText();
  check("the sync's outcome appears in place", synced.includes('3 rows read, 3 new, 0 updated'), synced);

  const down = page.locator('tr[data-source="down"]');
  await down.getByRole('button', { name: 'Sync now' }).click();
  await settled('down', 'failing');
  const failed = await down.innerText();
  check('a source that is down is named with why', failed.includes('never synced: cannot connect: connection refused'), failed);
  await page.screenshot({ path: join(out, 'sources.png'), fullPage: false });

  await page.goto(base + '/', { waitUntil: 'load' });
  await page.waitForSelector('.app[data-hydrated="true"]', { timeout: 30000 });
  const warning = await page.locator('[data-stale-source="down"]').innerText();
  check('the overview warns that its data never arrived', warning.includes('Data from down has never arrived: cannot connect: connection refused'), warning);
  check('the synced source is not stale', (await page.locator('[data-stale-source="drop"]').count()) === 0);
  check("no response holds the source's password", !bodies.some((b) => b.includes(secret)));
  check('no console errors', consoleErrors.length === 0, consoleErrors.join(' | '));
} finally {
  await context.close();
}
finish();
