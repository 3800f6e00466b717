// Browser test: the rules editor and the digests page. On /rules a value out of range is
// refused as it is typed (Save disabled, the range named); a valid edit is a new rules
// version listed in the history; a trigger over three consecutive weeks is added and reads
// back in words; a playbook is disabled; a second playbook for a covered cause is refused.
// On /notifications a digest is sent now and listed, and alerts are checked.
//
// Usage: OPSIGHT_URL=http://127.0.0.1:3000 node rules.mjs
import { join } from 'node:path';
import { base, out, check, launch, finish } from './lib.mjs';

const context = await launch();
try {
  const page = await context.newPage();
  const consoleErrors = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });

  await page.goto(base + '/rules', { waitUntil: 'load' });
  await page.waitForSelector('.app[data-hydrated="true"]', { timeout: 30000 });
  const version = async () => Number((await page.locator('.rules-version').innerText()).match(/\d+/)[0]);
  const v0 = await version();

  // A threshold out of range: the problem shows as it is typed and Save stays disabled.
  await page.locator('tr[data-rule="at_risk_band_pp"]').getByRole('button', { name: 'Edit' }).click();
  const form = page.locator('form.rule-editor');
  await form.waitFor({ timeout: 10000 });
  await form.locator('input[name="value"]').fill('80');
  await form.locator('.field-error').first().waitFor({ timeout: 5000 });
  const why = await form.locator('.field-error').first().innerText();
  check('an out-of-range value is refused as typed', /0\.1 to 50/.test(why), why);
  check('save is disabled while the form has problems', await form.locator('button.save').isDisabled());
  await form.locator('input[name="value"]').fill('2.5');
  await page.waitForFunction(() => !document.querySelector('form.rule-editor .field-error'), null, { timeout: 5000 });
  await form.locator('button.save').click();
  await page.waitForFunction((v) => {
    const t = document.querySelector('.rules-version')?.textContent ?? '';
    return t.includes(`version ${v + 1}`);
  }, v0, { timeout: 10000 });
  check('a saved edit is a new rules version', (await version()) === v0 + 1);
  const band = await page.locator('tr[data-rule="at_risk_band_pp"] td.value').innerText();
  check('the new value is shown', band.startsWith('2.5'), band);
  const history = await page.locator('.rule-history li').first().innerText();
  check('the change is in the history', history.includes('changed rule at_risk_band_pp: 2 → 2.5'), history);

  // A trigger over three consecutive weeks.
  await page.locator('section.triggers').getByRole('button', { name: 'Add' }).click();
  await form.waitFor({ timeout: 10000 });
  await form.locator('input[name="key"]').fill('otif_below_target_3w');
  await form.locator('select[name="condition"]').selectOption('below_target');
  await form.locator('input[name="value"]').fill('1');
  await form.locator('input[name="periods"]').fill('3');
  const reads = await form.locator('.reads-as').innerText();
  check('the trigger reads back in words', reads.includes('1 pts or more below target, 3 weeks in a row'), reads);
  await form.locator('button.save').click();
  await page.locator('tr[data-trigger="otif_below_target_3w"]').waitFor({ timeout: 10000 });
  check('the trigger is listed', (await page.locator('tr[data-trigger="otif_below_target_3w"] td.condition').innerText()).includes('3 weeks in a row'));

  // Disable a playbook; a second playbook for a covered cause is refused.
  const carrier = page.locator('tr[data-playbook="carrier_late"]');
  await carrier.getByRole('button', { name: 'Disable' }).click();
  await page.waitForSelector('tr[data-playbook="carrier_late"].disabled', { timeout: 10000 });
  check('a disabled playbook is marked and can be enabled again',
    (await carrier.getByRole('button', { name: 'Enable' }).count()) === 1);
  await page.locator('section.playbooks').getByRole('button', { name: 'Add' }).click();
  await form.waitFor({ timeout: 10000 });
  await form.locator('input[name="key"]').fill('stockout_two');
  await form.locator('input[name="cause"]').fill('reason:stockout');
  await form.locator('input[name="action"]').fill('Call the supplier');
  await form.locator('input[name="owner"]').fill('Buyer');
  await page.waitForFunction(() => /already covers/.test(document.querySelector('form.rule-editor')?.textContent ?? ''), null, { timeout: 5000 });
  check('one playbook per cause', await form.locator('button.save').isDisabled());
  await form.getByRole('button', { name: 'Cancel' }).click();
  await page.screenshot({ path: join(out, 'rules.png'), fullPage: true });

  // Digests and alerts.
  await page.goto(base + '/notifications', { waitUntil: 'load' });
  await page.waitForSelector('.app[data-hydrated="true"]', { timeout: 30000 });
  const before = await page.locator('tr.digest').count();
  await page.getByRole('button', { name: 'Send digest now' }).click();
  await page.waitForFunction((n) => document.querySelectorAll('tr.digest').length === n + 1, before, { timeout: 15000 });
  const title = await page.locator('tr.digest').first().innerText();
  check('a digest is sent and listed', /Opsight digest \d{4}-W\d{2}/.test(title), title);
  await page.getByRole('button', { name: 'Check alerts now' }).click();
  await page.locator('.checked').waitFor({ timeout: 15000 });
  const queued = Number(((await page.locator('.checked').innerText()).match(/(\d+) alert\(s\) queued/) ?? [])[1]);
  check('alerts are checked', Number.isInteger(queued), await page.locator('.checked').innerText());
  // Each queued alert is listed (the first check tells of every trigger firing now).
  await page.waitForFunction((n) => document.querySelectorAll('tr.alert').length >= n, queued, { timeout: 15000 })
    .catch(() => {});
  const listed = await page.locator('tr.alert').count();
  const rows = await page.locator('table.notifications tbody tr').count();
  check('the alerts are listed', listed >= Math.min(queued, 50), `queued ${queued}, alert rows ${listed}, rows ${rows}`);
  await page.screenshot({ path: join(out, 'notifications.png'), fullPage: true });

  check('no console errors', consoleErrors.length === 0, consoleErrors.join(' | '));
} catch (e) {
  check('rules and digests flow', false, e.stack);
} finally {
  await context.close();
}
finish();
