// Browser test: an agent whose insights and answers are full of script and event-handler
// payloads changes nothing. Opsight (OPSIGHT_URL) must be configured with this script's
// agent, an mlflow-serve agent at 127.0.0.1:XSS_AGENT_PORT, for cards and questions.
// The payloads must show as text; no script may run, no handler fire, no element appear.
import { createServer } from 'node:http';
import { base, out, check, launch, finish } from './lib.mjs';
import { join } from 'node:path';

const payloads = [
  '<script>window.__xss = "script"</script>',
  '<img src=x onerror="window.__xss = \'img\'">',
  '<svg onload="window.__xss = \'svg\'"></svg>',
  '"><iframe src="javascript:window.__xss=\'iframe\'"></iframe>',
  '<a href="javascript:window.__xss=\'link\'">click me</a>',
  '<b onmouseover="window.__xss=\'hover\'">hover me</b>',
  '[markdown](javascript:window.__xss="md") **bold** {{7*7}}',
];
const all = payloads.join(' ');
// One cause is the pack's real top contributor (so the grounding check keeps the reply);
// every text the card shows carries payloads, the second cause names a payload "carrier".
function insightFor(request) {
  const contributions = request?.custom_inputs?.evidence?.contributions ?? [];
  const top = contributions
    .flatMap((c) => (c.segments ?? []).map((s) => ({ dimension: c.dimension, ...s })))
    .sort((a, b) => Math.abs(b.total) - Math.abs(a.total))[0];
  const grounded = top
    ? { dimension: top.dimension, member: top.member, effect: 'rate', impact_pp: top.total, evidence: payloads[3] }
    : null;
  return {
    headline: `Headline ${payloads[0]} ${payloads[1]}`,
    root_causes: [grounded,
      { dimension: 'carrier', member: payloads[2], effect: 'rate', impact_pp: -0.2, evidence: payloads[6] }]
      .filter(Boolean),
    next_actions: [{ action: payloads[4], owner: payloads[5], priority: 'high' },
      { action: payloads[6], owner: 'Ops', priority: 'medium' }],
    confidence: 0.5,
  };
}
const agent = createServer((req, res) => {
  let body = '';
  req.on('data', (c) => { body += c; });
  req.on('end', () => {
    let request = null;
    try { request = JSON.parse(body); } catch { /* health checks and the like */ }
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({
      object: 'response',
      output: [{ type: 'message', id: 'm1', role: 'assistant', status: 'completed',
        content: [{ type: 'output_text', text: `Narrative: ${all}`, annotations: [] }] }],
      custom_outputs: { insight: insightFor(request) },
    }));
  });
});
await new Promise((r) => agent.listen(Number(process.env.XSS_AGENT_PORT), '127.0.0.1', r));

const context = await launch();
try {
  const page = await context.newPage();
  const dialogs = [];
  const consoleErrors = [];
  page.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss(); });
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  await page.goto(base + '/', { waitUntil: 'load' });
  await page.waitForSelector('.app[data-hydrated="true"]', { timeout: 30000 });
  const card = page.locator('[data-card="DAL:otif"]');
  const before = await card.getAttribute('data-insight-id');
  await card.getByRole('button', { name: 'Refresh insight' }).click();
  await page.waitForFunction((prev) => {
    const el = document.querySelector('[data-card="DAL:otif"]');
    return el && el.getAttribute('data-insight-id') && el.getAttribute('data-insight-id') !== prev;
  }, before, { timeout: 30000 });
  const text = await card.innerText();
  check('the payloads show as text on the card', text.includes('<script>window.__xss') && text.includes('onerror='), text.slice(0, 300));
  check('no element from the payloads on the card',
    (await card.locator('script, img, svg, iframe, a[href^="javascript"], b[onmouseover]').count()) === 0);
  // Hover and click what would have been handlers and links.
  for (const t of ['hover me', 'click me']) {
    const el = card.getByText(t).first();
    if (await el.count()) { await el.hover(); await el.click({ force: true }).catch(() => {}); }
  }
  // Server-rendered, too: a fresh load of the card's page.
  await page.goto(base + '/kpi/DAL/otif', { waitUntil: 'load' });
  await page.waitForSelector('.app[data-hydrated="true"]', { timeout: 30000 });
  const detail = await page.content();
  // Text nodes are escaped; inside the page's data scripts no payload may close the script.
  check('the server-rendered page escapes the payloads', detail.includes('&lt;script&gt;window.__xss')
    && !detail.includes('__xss = "script"</script>'));
  check('no element from the payloads on the rendered page',
    (await page.locator('main').locator('script, img, svg[onload], iframe, a[href^="javascript"], b[onmouseover]').count()) === 0);
  // A question: the answer is text as well.
  const dal = page.locator('[data-card="DAL:otif"]');
  await dal.locator('form.ask input.question').fill('Why is this down?');
  await dal.getByRole('button', { name: 'Ask' }).click();
  await dal.locator('.turn-answer').waitFor({ timeout: 30000 });
  const answer = await dal.locator('.turn-answer').innerText();
  check('the answer shows the payloads as text', answer.includes('<svg onload') || answer.includes('Narrative'), answer.slice(0, 300));
  check('no element from the payloads in the answer',
    (await dal.locator('.turn-answer').locator('script, img, svg, iframe, a[href^="javascript"]').count()) === 0);
  await page.waitForTimeout(500);
  check('no script ran', (await page.evaluate(() => window.__xss)) === undefined);
  check('no dialog opened', dialogs.length === 0, dialogs.join(' | '));
  check('no console errors', consoleErrors.length === 0, consoleErrors.join(' | '));
  await page.screenshot({ path: join(out, 'xss.png'), fullPage: true });
} finally {
  agent.close();
  await context.close();
}
finish();
