// Browser test: ask "why is this down?" on a KPI page and watch the answer stream in.
// The questions agent is the reference MLflow agent behind AgentServer, writing a word
// every few tens of milliseconds; the test records the streamed text as it changes and
// checks it grew in several pieces before the structured answer replaced it. Then it
// opens the conversation by its URL and asks a follow-up.
//
// Usage: OPSIGHT_URL=http://127.0.0.1:3000 E2E_AGENT_TOKEN=<the questions agent token> node ask.mjs
// (.ci/test sets both; the token check fails without the token, so it cannot pass vacuously).
import { join } from 'node:path';
import { base, out, check, launch, finish } from './lib.mjs';

const context = await launch();
try {
  const page = await context.newPage();
  const consoleErrors = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  // Every body the browser receives (pages, server functions, the event stream, wasm).
  const token = process.env.E2E_AGENT_TOKEN;
  const leaks = [];
  let bodies = 0;
  page.on('response', async (r) => {
    try {
      const body = await r.body();
      bodies++;
      if (token && body.includes(token)) leaks.push(r.url());
    } catch { /* redirects and aborted requests have no body */ }
  });
  await page.goto(base + '/kpi/DAL/otif', { waitUntil: 'load' });
  await page.waitForSelector('.app[data-hydrated="true"]', { timeout: 30000 });

  // Record every distinct streamed text, with the time, until the answer appears.
  await page.evaluate(() => {
    window.__pieces = [];
    window.__answerAt = null;
    const seen = new Set();
    const observer = new MutationObserver(() => {
      const s = document.querySelector('[data-card="DAL:otif"] [data-streaming]');
      if (s) {
        const t = s.textContent.replace('▍', '');
        if (t && !seen.has(t)) { seen.add(t); window.__pieces.push({ t, at: performance.now() }); }
      }
      if (!window.__answerAt && document.querySelector('[data-card="DAL:otif"] .turn-answer')) {
        window.__answerAt = performance.now();
      }
    });
    observer.observe(document.body, { subtree: true, childList: true, characterData: true });
  });
  const card = page.locator('[data-card="DAL:otif"]');
  await card.locator('form.ask input.question').fill('Why is OTIF down at Dallas?');
  await card.getByRole('button', { name: 'Ask' }).click();
  await card.locator('.turn-answer').waitFor({ timeout: 60000 });
  const { pieces, answerAt } = await page.evaluate(() => ({ pieces: window.__pieces, answerAt: window.__answerAt }));
  const growing = pieces.every((p, i) => i === 0 || p.t.startsWith(pieces[i - 1].t));
  check('text arrived in pieces before the answer completed',
    pieces.length >= 3 && pieces.every((p) => p.at < answerAt) && growing,
    `pieces=${pieces.length}`);
  const answer = await card.locator('.turn-answer').innerText();
  check('the final answer names causes checked against the data', /supported by the data/.test(answer), answer.slice(0, 200));
  const claims = card.locator('.turn-answer .claims');
  check('every figure and name of the answer is checked and holds',
    (await claims.getAttribute('data-unsupported')) === '0' && /match the evidence/.test(await claims.innerText()),
    await claims.innerText());
  await card.screenshot({ path: join(out, 'ask.png') });

  // The conversation has its own URL; a follow-up continues it.
  const link = card.locator('.conversation-link a');
  const href = await link.getAttribute('href');
  check('conversation link', /^\/conversations\/cnv_/.test(href ?? ''), href);
  await page.goto(base + href, { waitUntil: 'load' });
  await page.waitForSelector('.app[data-hydrated="true"]', { timeout: 30000 });
  check('conversation page shows the first turn', (await page.locator('article.turn').count()) === 1);
  await page.locator('form.ask input.question').fill('What should we do first?');
  await page.getByRole('button', { name: 'Ask' }).click();
  await page.waitForFunction(() => document.querySelectorAll('article.turn .turn-answer').length === 2, null, { timeout: 60000 });
  const second = await page.locator('article.turn .turn-answer').nth(1).innerText();
  check('the follow-up is answered as its own question: what to do, and who owns it',
    /owner: /.test(second) && second !== answer, second.slice(0, 200));
  await page.reload({ waitUntil: 'load' });
  check('both turns are saved', (await page.locator('article.turn').count()) === 2);
  await page.screenshot({ path: join(out, 'conversation.png'), fullPage: true });

  await page.goto(base + '/settings', { waitUntil: 'load' });
  await page.waitForSelector('.app[data-hydrated="true"]', { timeout: 30000 });
  await page.getByRole('button', { name: 'Check now' }).click();
  await page.waitForSelector('tr[data-agent="reference-stream"].health-ok', { timeout: 30000 });
  check('settings shows the agents and their health', (await page.locator('table.agents tbody tr').count()) === 2);
  const tokenCell = await page.locator('tr[data-agent="reference-stream"]').innerText();
  check('the questions agent has a token configured', !token || /token set/.test(tokenCell), tokenCell);
  // The JSON API too (fetched from the page: navigating to JSON makes the browser ask
  // for /favicon.ico).
  await page.evaluate(() => fetch('/api/v1/agents?check=true').then((r) => r.text()));
  await page.waitForTimeout(300);
  check('the agent token reached no response the browser got', Boolean(token) && bodies > 10 && leaks.length === 0,
    `token=${Boolean(token)} bodies=${bodies} leaks=${leaks.join(' ')}`);
  await page.screenshot({ path: join(out, 'settings.png'), fullPage: true });
  check('no console errors', consoleErrors.length === 0, consoleErrors.join(' | '));
} finally {
  await context.close();
}
finish();
