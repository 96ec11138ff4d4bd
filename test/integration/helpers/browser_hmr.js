// Headless Chromium (Debian's, driven by playwright-core) through svcd's preview
// proxy: the page loads, Vite's HMR socket connects through /preview/..., an edit
// arrives as a hot update (no reload), then the seed-001 scenario: the dev server
// stops -> a reload shows svcd's "starting…" page -> the dev server comes back ->
// that page reloads itself into the app, with HMR connected again.
//
//   node browser_hmr.js URL MAIN_JS_PATH PROFILE_DIR SCREENSHOT_PNG
// Talks to the test over stdio: prints "step NAME {json}" lines, and before the
// stop/start phases waits for a "go" line on stdin. Every WebSocket the page opens
// is recorded with the wall time (ms) it closed at; the loading page is
// screenshotted to SCREENSHOT_PNG for the test to check.
'use strict';
const fs = require('fs');
const readline = require('readline');
const { chromium } = require('playwright-core');

const [url, mainJs, profile, shotPath] = process.argv.slice(2);
const rl = readline.createInterface({ input: process.stdin });
const lines = [];
let waiter = null;
rl.on('line', (l) => { if (waiter) { const w = waiter; waiter = null; w(l); } else lines.push(l); });
const nextLine = () => new Promise((res) => (lines.length ? res(lines.shift()) : (waiter = res)));
const step = (name, data) => process.stdout.write('step ' + name + ' ' + JSON.stringify(data || {}) + '\n');
const fail = (msg) => { step('error', { message: msg }); process.exit(1); };
setTimeout(() => fail('overall timeout'), Number(process.env.BROWSER_TIMEOUT_MS || 150000));

(async () => {
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--disable-dev-shm-usage'],
  });
  const page = ctx.pages()[0] || (await ctx.newPage());
  const consoleLines = [];
  page.on('console', (m) => consoleLines.push(m.text()));
  const sockets = []; // {url, openedAt, closedAt}: every WebSocket of the page
  page.on('websocket', (ws) => {
    const rec = { url: ws.url(), openedAt: Date.now(), closedAt: null };
    sockets.push(rec);
    ws.on('close', () => { rec.closedAt = Date.now(); });
  });
  const waitConsole = async (needle, sinceIdx, ms) => {
    const t0 = Date.now();
    while (Date.now() - t0 < ms) {
      if (consoleLines.slice(sinceIdx).some((l) => l.includes(needle))) return true;
      await page.waitForTimeout(100);
    }
    return false;
  };

  // 1. the app through the proxy, HMR socket connected through it too
  const resp = await page.goto(url, { waitUntil: 'load' });
  if (resp.status() !== 200) fail('first load status ' + resp.status());
  await page.waitForFunction(() => document.getElementById('msg').textContent === 'hello v1', null, { timeout: 20000 });
  if (!(await waitConsole('[vite] connected', 0, 20000))) fail('HMR never connected: ' + JSON.stringify(consoleLines));
  const loadId = await page.evaluate(() => window.__loadId);
  step('loaded', { loadId });

  // 2. an edit arrives as a hot update, without a reload
  const src = fs.readFileSync(mainJs, 'utf8');
  fs.writeFileSync(mainJs, src.replace("'hello v1'", "'hello v2'"));
  await page.waitForFunction(() => document.getElementById('msg').textContent === 'hello v2', null, { timeout: 20000 });
  const loadId2 = await page.evaluate(() => window.__loadId);
  if (loadId2 !== loadId) fail('the page was reloaded instead of hot-updated');
  const hmrSockets = sockets.filter((s) => s.closedAt === null);
  step('hmr', { updated: true, sameDocument: true, openSockets: hmrSockets.map((s) => s.url),
    console: consoleLines.filter((l) => l.includes('[vite]')) });

  // 3. the test stops the dev server: the HMR socket(s) open until now close
  //    (the page is not reloaded before that), then a reload shows the loading page
  await nextLine();
  for (let i = 0; i < 200 && hmrSockets.some((s) => s.closedAt === null); i++) await page.waitForTimeout(100);
  const closed = hmrSockets.map((s) => ({ url: s.url, closedAt: s.closedAt }));
  let r = null;
  for (let i = 0; i < 50; i++) {
    r = await page.reload({ waitUntil: 'load' });
    if (r.status() === 503) break;
    await page.waitForTimeout(200);
  }
  if (r.status() !== 503) fail('no 503 after the dev server stopped: ' + r.status());
  const title = await page.textContent('#svcd-preview-starting');
  await page.waitForTimeout(300); // let it paint
  await page.screenshot({ path: shotPath });
  step('loading', { status: r.status(), title, closed, screenshot: shotPath,
    viewport: page.viewportSize(), bodyText: await page.innerText('body') });

  // 4. the test starts it again: the loading page reloads itself into the app
  await nextLine();
  const sinceIdx = consoleLines.length;
  await page.waitForFunction(() => {
    const m = document.getElementById('msg');
    return m && m.textContent === 'hello v2';
  }, null, { timeout: 60000, polling: 250 });
  if (!(await waitConsole('[vite] connected', sinceIdx, 20000))) fail('HMR did not reconnect');
  step('recovered', { url: page.url() });
  await ctx.close();
  process.exit(0);
})().catch((e) => fail(String(e && e.stack || e)));
