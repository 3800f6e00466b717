// Browser test: schedules and runs. On /schedules, the editor rejects a bad cron
// expression with its reason and previews the next five runs of a good one in its time
// zone; a schedule is saved, paused, resumed, run now and deleted. On the overview,
// "Refresh all cards" shows a live progress bar and the cards gain their insights without a
// reload; /runs lists the runs.
//
// Usage: OPSIGHT_URL=http://127.0.0.1:3000 node runs.mjs
import { join } from 'node:path';
import { base, out, check, launch, finish } from './lib.mjs';

const context = await launch();
try {
  const page = await context.newPage();
  const consoleErrors = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });

  await page.goto(base + '/schedules', { waitUntil: 'load' });
  await page.waitForSelector('.app[data-hydrated="true"]', { timeout: 30000 });
  const editor = page.locator('form.schedule-editor');
  await editor.locator('input[name="name"]').fill('Weekday mornings');
  await editor.locator('input[name="cron"]').fill('0 6 * * 8');
  await page.waitForSelector('.cron-error', { timeout: 10000 });
  const why = await page.locator('.cron-error').innerText();
  check('a bad expression is refused with its reason', /day-of-week '8'/.test(why), why);
  await editor.locator('input[name="cron"]').fill('0 6 * * 1-5');
  await editor.locator('input[name="timezone"]').fill('America/Chicago');
  await page.waitForFunction(() => {
    const items = [...document.querySelectorAll('.next-runs li')].map((li) => li.textContent);
    return items.length === 5 && items.every((t) => t.includes('06:00:00') && t.includes('CST'));
  }, null, { timeout: 10000 });
  const preview = await page.locator('.next-runs li').allInnerTexts();
  check('the next five runs are previewed in the zone, weekdays only',
    preview.length === 5 && preview.every((t) => !/^(Sat|Sun)/.test(t)), preview.join(' | '));
  await editor.getByRole('button', { name: 'Save' }).click();
  const row = page.locator('tr[data-schedule="Weekday mornings"]');
  await row.waitFor({ timeout: 10000 });
  check('the saved schedule is listed with its next runs', (await row.locator('.upcoming li').count()) === 5);
  await row.getByRole('button', { name: 'Pause' }).click();
  await page.waitForSelector('tr[data-schedule="Weekday mornings"].paused', { timeout: 10000 });
  check('pause', (await row.locator('.upcoming li').count()) === 0);
  await row.getByRole('button', { name: 'Resume' }).click();
  await page.waitForSelector('tr[data-schedule="Weekday mornings"].enabled', { timeout: 10000 });
  check('resume', (await row.locator('.upcoming li').count()) === 5);
  await row.getByRole('button', { name: 'Run now' }).click();
  await row.locator('a.started').waitFor({ timeout: 10000 });
  check('run now starts a run of the flagged cards', /started: \d+ cards/.test(await row.locator('a.started').innerText()));
  await page.screenshot({ path: join(out, 'schedules.png'), fullPage: true });

  // The overview: refresh every card, watch the bar, see cards fill in place.
  await page.goto(base + '/', { waitUntil: 'load' });
  await page.waitForSelector('.app[data-hydrated="true"]', { timeout: 30000 });
  await page.evaluate(() => { window.__marker = 'still-here'; });
  // Wait for the flagged run to end, so the next bar is the new one.
  await page.waitForFunction(() => ![...document.querySelectorAll('.run-progress')]
    .some((b) => b.dataset.status === 'running'), null, { timeout: 30000 });
  const empty = await page.evaluate(() => [...document.querySelectorAll('[data-card]')]
    .filter((c) => !c.getAttribute('data-insight-id')).map((c) => c.getAttribute('data-card')));
  check('some cards have no insight yet', empty.length > 0, `${empty.length}`);
  await page.getByRole('button', { name: 'Refresh all cards' }).click();
  await page.waitForSelector('.run-progress[data-total="65"]', { timeout: 15000 });
  await page.screenshot({ path: join(out, 'run-progress.png') });
  await page.waitForSelector('.run-progress[data-total="65"][data-status="finished"]', { timeout: 60000 });
  const bar = page.locator('.run-progress[data-total="65"]');
  const [done, unchanged, failed] = await Promise.all(
    ['data-done', 'data-unchanged', 'data-failed'].map((a) => bar.getAttribute(a)));
  check('every card refreshed or unchanged, none failed',
    Number(done) + Number(unchanged) === 65 && failed === '0', `${done}/${unchanged}/${failed}`);
  check('cards that had none now show an insight, without a reload', await page.waitForFunction(
    (keys) => keys.every((k) => document.querySelector(`[data-card="${k}"]`)?.getAttribute('data-insight-id')),
    empty, { timeout: 10000 }).then(() => true, () => false));
  check('no page reload', (await page.evaluate(() => window.__marker)) === 'still-here');

  await page.goto(base + '/runs', { waitUntil: 'load' });
  await page.waitForSelector('.app[data-hydrated="true"]', { timeout: 30000 });
  const first = page.locator('table.runs tbody tr').first();
  const text = await first.innerText();
  check('run history lists the run first, finished', /all cards/.test(text) && /finished/.test(text), text);
  await first.locator('a').first().click();
  await page.waitForSelector('table.jobs', { timeout: 10000 });
  check('run detail lists its 65 jobs', (await page.locator('table.jobs tbody tr').count()) === 65);
  await page.screenshot({ path: join(out, 'runs.png'), fullPage: false });

  await page.goto(base + '/schedules', { waitUntil: 'load' });
  await page.waitForSelector('.app[data-hydrated="true"]', { timeout: 30000 });
  await page.locator('tr[data-schedule="Weekday mornings"]').getByRole('button', { name: 'Delete' }).click();
  await page.waitForSelector('tr[data-schedule="Weekday mornings"]', { state: 'detached', timeout: 10000 });
  check('delete', true);
  check('no console errors', consoleErrors.length === 0, consoleErrors.join(' | '));
} finally {
  await context.close();
}
finish();
