// End-to-end test of `xent serve` in Debian's headless chromium, driven by
// playwright-core (no browser download). Every number the page shows is
// compared with the library's output for the same input: `xent explain
// --json` / `xent eval --format json` run as separate processes (exact
// equality: page and command line must be the same code), or a closed form
// where the CLI has no such output (the −log p curve). Also: keyboard and
// mouse editing, presets, the unit switch, the upload, the update latency at
// K = 1000, no request leaves the server's origin, no console errors; and a
// screenshot of each panel into docs/img/.
//
// usage: node explorer.test.mjs XENT_BINARY [SCREENSHOT_DIR]
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const xent = process.argv[2];
const shots = process.argv[3];
if (!xent) { console.error('usage: node explorer.test.mjs XENT [SCREENSHOT_DIR]'); process.exit(2); }

let failures = 0, checks = 0;
function check(ok, what) {
  checks++;
  if (!ok) { failures++; console.error(`FAIL: ${what}`); }
}
// Exact equality of a shown value (data-value, the string of the double) and
// the CLI's JSON value.
function same(shown, expected, what) {
  const e = typeof expected === 'number' ? String(expected) : expected;
  check(shown === e, `${what}: page ${shown} vs xent ${e}`);
}
function close(shown, expected, rel, what) {
  const v = Number(shown);
  check(Math.abs(v - expected) <= rel * Math.max(1e-300, Math.abs(expected)), `${what}: page ${v} vs ${expected}`);
}
function cli(args) {
  const r = spawnSync(xent, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`xent ${args.join(' ')} failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}
const list = a => a.join(',');

// ------------------------------------------------------------- the server ---
const tmp = mkdtempSync(join(tmpdir(), 'xent-browser-'));
const server = spawn(xent, ['serve', '--port', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
const url = await new Promise((resolve, reject) => {
  let out = '';
  server.stdout.on('data', d => { out += d; const m = out.match(/http:\/\/127\.0\.0\.1:\d+\//); if (m) resolve(m[0]); });
  server.on('exit', c => reject(new Error(`xent serve exited with ${c}`)));
  setTimeout(() => reject(new Error('xent serve did not start')), 10000);
});
let browser;
const cleanup = () => {
  server.kill('SIGTERM');
  rmSync(tmp, { recursive: true, force: true });
};

try {
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    // Playwright gives every launch a fresh temporary profile (--user-data-dir).
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 }, deviceScaleFactor: 1 });
  const errors = [];
  page.on('pageerror', e => errors.push(String(e)));
  page.on('console', m => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('request', r => check(r.url().startsWith(url) || r.url().startsWith('data:'), `request outside the server: ${r.url()}`));
  await page.goto(url);
  await page.waitForSelector('body[data-ready="1"]');
  const settled = () => page.waitForFunction(() => window.__xent.busy === 0 && !document.querySelector('section[data-busy="1"]'));
  await settled();
  const value = sel => page.$eval(sel, e => e.dataset.value);
  const table = sel => page.$$eval(`${sel} tr`, rows => rows.map(tr => [...tr.cells].map(c => c.dataset.value ?? c.textContent)));
  const unitArgs = () => page.$eval('input[name=unit]:checked', r => (r.value === 'bits' ? ['--bits'] : []));

  // ----------------------------------------------- panel 1: distributions ---
  async function checkDist(what) {
    const rows = await table('#dist-rows');
    const p = rows.map(r => r[1]), q = rows.map(r => r[2]);
    const j = cli(['explain', '--p', list(p), '--q', list(q), '--json', ...await unitArgs()]);
    same(await value('#dist-entropy'), j.entropy, `${what} H(P)`);
    same(await value('#dist-kl'), j.kl, `${what} KL`);
    same(await value('#dist-ce'), j.cross_entropy, `${what} H(P,Q)`);
    same(await value('#dist-check'), j.check.entropy_plus_kl, `${what} H+KL`);
    j.rows.forEach((w, i) => {
      same(rows[i][3], w.neg_p_log_p, `${what} row ${i} -p log p`);
      same(rows[i][4], w.neg_p_log_q, `${what} row ${i} -p log q`);
      same(rows[i][5], w.p_log_p_over_q, `${what} row ${i} p log p/q`);
    });
    return { p, q };
  }
  const before = await checkDist('dist default');
  // Keyboard: five steps up on p[0].
  await page.focus('#dist-p g[data-index="0"]');
  for (let i = 0; i < 5; i++) await page.keyboard.press('ArrowUp');
  await settled();
  const afterKeys = await checkDist('dist after keys');
  check(Math.abs(Number(afterKeys.p[0]) - Number(before.p[0]) - 0.05) < 1e-9, `ArrowUp ×5 raised p0 by 0.05: ${before.p[0]} → ${afterKeys.p[0]}`);
  check(Math.abs(afterKeys.p.reduce((s, x) => s + Number(x), 0) - 1) < 1e-12, 'P still sums to 1');
  // Mouse: drag q[2] to the top third.
  const bar = await page.$('#dist-q g[data-index="2"] rect.track');
  const box = await bar.boundingBox();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height * 0.7);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height * 0.3, { steps: 8 });
  await page.mouse.up();
  await settled();
  const afterDrag = await checkDist('dist after drag');
  check(Math.abs(Number(afterDrag.q[2]) - 0.7) < 0.02, `dragging q2 to 70% height gives q2 ≈ 0.7: ${afterDrag.q[2]}`);
  // A zero in Q under a positive P: H(P,Q) = KL = ∞, shown as such.
  await page.evaluate(() => document.getElementById('dist').setCase([0.5, 0.5, 0, 0], [1, 0, 0, 0]));
  await settled();
  check(await value('#dist-ce') === 'inf', 'q = 0 under p > 0 gives H(P,Q) = inf');
  await checkDist('dist with q = 0');
  await page.evaluate(() => document.getElementById('dist').setCase([0.6, 0.25, 0.1, 0.05], [0.4, 0.3, 0.2, 0.1]));
  await settled();
  if (shots) await page.locator('#dist').screenshot({ path: join(shots, 'explorer-1-distributions.png') });

  // ---------------------------------------------------- panel 2: logits ---
  // The table shows the rows in view (it is virtual past ~25 classes): each
  // shown row is checked by its index; the case itself is read from the
  // panel's input state.
  async function checkLogits(what, caseArgs) {
    const rows = await table('#logits-rows');
    let args = caseArgs;
    if (!args) {
      const c = await page.$eval('#logits', s => s.getCase());
      args = ['--logits', list(c.z.map(String))];
      if (c.soft) args.push('--p', list(c.p.map(String)));
      else args.push('--target', String(c.target));
    }
    const j = cli(['explain', ...args, '--json', ...await unitArgs()]);
    same(await value('#logits-loss'), j.loss, `${what} loss`);
    same(await value('#logits-ppl'), j.perplexity, `${what} perplexity`);
    same(await value('#logits-entropy'), j.entropy, `${what} H(p)`);
    same(await value('#logits-kl'), j.kl, `${what} KL`);
    same(await value('#logits-verdict'), j.verdict.label, `${what} verdict`);
    check(rows.length === Math.min(j.k, rows.length) && rows.length > 0, `${what}: ${rows.length} rows shown for K = ${j.k}`);
    if (j.k <= 20) check(rows.length === j.k, `${what}: all ${j.k} rows shown`);
    for (const row of rows) {
      const i = Number(row[0]), w = j.rows[i];
      same(row[1], w.logit, `${what} z${i}`);
      same(row[2], w.prob, `${what} q${i}`);
      same(row[3], w.target, `${what} p${i}`);
      same(row[4], w.loss_term, `${what} term${i}`);
      same(row[5], w.grad, `${what} grad${i}`);
      const hint = w.grad < 0 ? 'raise' : w.grad > 0 ? 'lower' : '—';
      check(row[6].startsWith(hint), `${what} row ${i} says ${row[6]} for gradient ${w.grad}`);
    }
    return rows;
  }
  await checkLogits('logits default');
  for (const name of ['matched-soft', 'diffuse-one-hot', 'overconfident-wrong', 'soft-mismatch']) {
    await page.click(`#logits-presets button[data-preset="${name}"]`);
    await settled();
    await checkLogits(`preset ${name}`, ['--preset', name]);
    if (name === 'overconfident-wrong' && shots) await page.locator('#logits').screenshot({ path: join(shots, 'explorer-2-logits.png') });
  }
  // A slider move (keyboard on the range input), and a new target by click.
  await page.click('#logits-presets button[data-preset="diffuse-one-hot"]');
  await settled();
  await page.focus('#z2');
  for (let i = 0; i < 7; i++) await page.keyboard.press('ArrowRight');
  await page.click('#logits-sliders .slider-row:nth-child(4) input[type=radio]');
  await settled();
  await checkLogits('logits after slider + target');
  // A click on the bar of class 0 makes it the target.
  {
    const box = await (await page.$('#logits-q')).boundingBox();
    await page.mouse.click(box.x + box.width * (40 + 0.5 * 710 / 4) / 760, box.y + box.height * 0.5);
    await settled();
    const c = await page.$eval('#logits', s => s.getCase());
    check(c.target === 0, `click on bar 0 picks class 0 as the target (${c.target})`);
    await checkLogits('logits after clicking bar 0');
  }
  // Soft target mode.
  await page.check('#logits-soft');
  await page.$eval('#logits-sliders .slider-row:nth-child(2) input.soft', e => { e.value = '0.4'; e.dispatchEvent(new Event('input')); });
  await settled();
  await checkLogits('logits soft target');

  // --------------------------------------------------------- unit switch ---
  await page.check('input[name=unit][value=bits]');
  await settled();
  await checkLogits('logits in bits');
  await checkDist('dist in bits');
  const bitsShown = await page.$eval('#logits .u', e => e.textContent);
  check(bitsShown === 'bits', `unit label reads ${bitsShown}`);
  await page.check('input[name=unit][value=nats]');
  await settled();
  await checkDist('dist back in nats');

  // ------------------------------------------ latency at K = 1000 classes ---
  await page.uncheck('#logits-soft');
  await page.fill('#logits-k', '1000');
  await page.$eval('#logits-k', e => e.dispatchEvent(new Event('change')));
  await settled();
  await page.click('#logits-random');
  await settled();
  const timings = await page.evaluate(async () => {
    const out = [];
    const s = document.getElementById('z500'), panel = document.getElementById('logits');
    for (let i = 0; i < 40; i++) {
      const n = window.__xent.timings.length;
      // Woken by the panel's data-busy going back to 0 (a MutationObserver,
      // no polling: a timer waking the page every few ms would compete with
      // the round trip it measures).
      const done = new Promise(resolve => {
        const mo = new MutationObserver(() => {
          if (window.__xent.timings.length > n && !window.__xent.busy) { mo.disconnect(); resolve(); }
        });
        mo.observe(panel, { attributes: true, attributeFilter: ['data-busy'] });
      });
      s.value = String(-5 + (i % 20) * 0.5);
      s.dispatchEvent(new Event('input'));
      await done;
      out.push(window.__xent.timings[window.__xent.timings.length - 1]);
      await new Promise(r => requestAnimationFrame(() => r()));
    }
    return out;
  });
  // Each part of the loop, median and p90 over the 40 moves: input event →
  // request sent (wait), the round trip (fetch: request, the server's work,
  // the answer parsed), of which the server's own work (parse, libxent,
  // JSON; its Server-Timing header) and the rest (network: the browser's
  // IPC and network stack, the loopback socket, parsing the answer), and
  // drawing the answer (render).
  for (const t of timings) t.network = t.fetch - t.server;
  const pct = (key, q) => timings.map(t => t[key]).sort((a, b) => a - b)[Math.min(timings.length - 1, Math.floor(q * timings.length))];
  const median = pct('ms', 0.5), p90 = pct('ms', 0.9), max = pct('ms', 1);
  const part = key => `${key} ${pct(key, 0.5).toFixed(2)}/${pct(key, 0.9).toFixed(2)}`;
  console.log(`K = 1000 slider move → every number updated: median ${median.toFixed(2)} ms, p90 ${p90.toFixed(2)} ms, max ${max.toFixed(2)} ms (frame: 16.7 ms); parts, median/p90 ms: ${['wait', 'fetch', 'server', 'network', 'render'].map(part).join(', ')}`);
  // The page's own work (drawing the answer) must fit in a frame. The whole
  // loop also holds the HTTP round trip, which on a loaded 2-core machine is
  // several ms of scheduling and grows with the load: without
  // XENT_LATENCY_BUDGET_MS the median is held to 3 frames (50 ms), a bound a
  // shared machine keeps; with it (16.7 for the one-frame target)
  // both the median and the p90 are held to the budget.
  const strict = Boolean(process.env.XENT_LATENCY_BUDGET_MS);
  const budget = Number(process.env.XENT_LATENCY_BUDGET_MS || 50);
  check(pct('render', 0.5) < 16.7, `median drawing time at K = 1000 within one frame: ${pct('render', 0.5).toFixed(2)} ms`);
  check(median <= budget, `median update at K = 1000 within ${budget} ms: ${median.toFixed(2)} ms`);
  if (strict) check(p90 <= budget, `p90 update at K = 1000 within ${budget} ms: ${p90.toFixed(2)} ms`);
  const top = await checkLogits('logits K = 1000');
  check(Number(top[0][0]) === 0, 'K = 1000: the table starts at class 0');
  await page.$eval('#logits-scroll', e => { e.scrollTop = e.scrollHeight; });
  await page.waitForFunction(() => Number(document.getElementById('logits-rows').dataset.first) > 900);
  const bottom = await checkLogits('logits K = 1000, scrolled to the end');
  check(Number(bottom[bottom.length - 1][0]) === 999, `K = 1000: the last row is class 999 (${bottom[bottom.length - 1][0]})`);
  // Back to K = 5 with the table scrolled to its end: all 5 rows shown
  // (the table's cached scroll position is stale until the browser clamps it).
  await page.fill('#logits-k', '5');
  await page.$eval('#logits-k', e => e.dispatchEvent(new Event('change')));
  await settled();
  await checkLogits('logits K = 5 after K = 1000 scrolled');

  // ----------------------------------------------------- panel 3: curves ---
  await page.$eval('#curve-p', e => { e.value = '0.15'; e.dispatchEvent(new Event('input')); });
  await settled();
  const p3 = Number(await value('#curve-pv'));
  check(p3 === 0.15, `curve point p = ${p3}`);
  close(await value('#curve-y1'), -Math.log(0.15), 4e-16, '−log p');
  close(await value('#curve-y0'), -Math.log1p(-0.15), 4e-16, '−log(1−p)');
  close(await value('#curve-s1'), -1 / 0.15, 4e-16, 'slope −1/p');
  close(await value('#curve-s0'), 1 / 0.85, 4e-16, 'slope 1/(1−p)');
  check(Number(await value('#curve-fd')) < 1e-6, 'finite differences agree with −1/p');
  close(await value('#curve-g1'), 0.15 - 1, 1e-15, 'σ(z) − 1');
  close(await value('#curve-g0'), 0.15, 1e-15, 'σ(z) − 0');
  if (shots) await page.locator('#curve').screenshot({ path: join(shots, 'explorer-3-curve.png') });

  // -------------------------------------------- panel 4: label smoothing ---
  await page.$eval('#smooth-eps', e => { e.value = '0.2'; e.dispatchEvent(new Event('input')); });
  await settled();
  for (const [i, mode] of [[0, null], [1, 'uniform'], [2, 'off-target']]) {
    const args = ['explain', '--logits', '3,1,0.5,0,-1', '--target', '0', '--json'];
    if (mode) args.push('--smoothing', '0.2', '--smoothing-mode', mode);
    const j = cli(args);
    const col = `#smooth-cols .col:nth-child(${i + 1})`;
    same(await value(`${col} .loss`), j.loss, `smoothing ${mode} loss`);
    same(await value(`${col} .entropy`), j.entropy, `smoothing ${mode} H(p)`);
    same(await value(`${col} .kl`), j.kl, `smoothing ${mode} KL`);
    same(await value(`${col} .ptarget`), j.targets[0], `smoothing ${mode} p(target)`);
    same(await value(`${col} .gtarget`), j.grad[0], `smoothing ${mode} grad(target)`);
  }
  if (shots) await page.locator('#smooth').screenshot({ path: join(shots, 'explorer-4-smoothing.png') });

  // ---------------------------------------------------- panel 5: CE vs MSE ---
  await page.$eval('#mse-z', e => { e.value = '8'; e.dispatchEvent(new Event('input')); });
  await settled();
  {
    const j = cli(['explain', '--logits', '2,8,0,0', '--target', '0', '--compare-mse', '--json']);
    same(await value('#mse-q0'), j.probs[0], 'mse q0');
    same(await value('#mse-celoss'), j.loss, 'mse CE loss');
    same(await value('#mse-mseloss'), j.mse.loss, 'mse loss');
    same(await value('#mse-cenorm'), j.mse.ce_grad_norm, 'CE grad norm');
    same(await value('#mse-msenorm'), j.mse.grad_norm, 'MSE grad norm');
    check(j.mse.grad_norm < 0.1 * j.mse.ce_grad_norm, 'confidently wrong: the MSE gradient has vanished');
  }
  if (shots) await page.locator('#mse').screenshot({ path: join(shots, 'explorer-5-mse.png') });

  // ---------------------------------------------- panel 6: double softmax ---
  await page.$eval('#double-s', e => { e.value = '3'; e.dispatchEvent(new Event('input')); });
  await settled();
  {
    const j = cli(['explain', '--logits', '6,1.5,0,-3', '--target', '0', '--double-softmax', '--json']);
    const d = j.double_softmax;
    same(await value('#double-loss'), d.correct_loss, 'right loss');
    same(await value('#double-gnorm'), d.correct_grad_norm, 'right grad norm');
    same(await value('#double-bloss'), d.loss, 'double-softmax loss');
    same(await value('#double-bgnorm'), d.grad_norm, 'double-softmax grad norm');
    same(await value('#double-floor'), d.loss_floor, 'loss floor');
  }
  if (shots) await page.locator('#double').screenshot({ path: join(shots, 'explorer-6-double-softmax.png') });

  // --------------------------------------------------- panel 7: your data ---
  {
    // A small, miscalibrated 3-class model: 300 rows, .npy written by hand.
    const n = 300, v = 3;
    const logits = new Float32Array(n * v), targets = new BigInt64Array(n);
    let s = 12345;
    const rnd = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
    for (let r = 0; r < n; r++) {
      const t = Math.floor(rnd() * v);
      targets[r] = BigInt(t);
      for (let c = 0; c < v; c++) logits[r * v + c] = 3 * (rnd() - 0.5) + (c === t ? 1.5 * rnd() + 0.5 : 0) * 2;
    }
    const npy = (descr, shape, bytes) => {
      let h = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
      while ((10 + h.length + 1) % 64) h += ' ';
      h += '\n';
      const head = Buffer.alloc(10);
      head.write('\x93NUMPY', 0, 'latin1'); head[6] = 1; head[7] = 0; head.writeUInt16LE(h.length, 8);
      return Buffer.concat([head, Buffer.from(h, 'latin1'), Buffer.from(bytes.buffer)]);
    };
    const lf = join(tmp, 'logits.npy'), tf = join(tmp, 'targets.npy');
    writeFileSync(lf, npy('<f4', [n, v], logits));
    writeFileSync(tf, npy('<i8', [n], targets));
    await page.setInputFiles('#data-logits', lf);
    await page.setInputFiles('#data-targets', tf);
    await page.fill('#data-bins', '10');
    await page.click('#data-form button[type=submit]');
    await page.waitForFunction(() => document.getElementById('data-rows').dataset.value !== undefined);
    const j = cli(['eval', '--logits', lf, '--targets', tf, '--bins', '10', '--format', 'json']);
    same(await value('#data-rows'), j.rows_evaluated, 'eval rows');
    same(await value('#data-loss'), j.loss_nats, 'eval loss');
    same(await value('#data-ppl'), j.perplexity, 'eval perplexity');
    same(await value('#data-acc'), j.accuracy, 'eval accuracy');
    same(await value('#data-ece'), j.ece, 'eval ECE');
    same(await value('#data-brier'), j.brier, 'eval Brier');
    const worst = await table('#data-worst');
    check(worst.length === j.highest_loss_rows.length, 'highest-loss rows listed');
    j.highest_loss_rows.forEach((w, i) => {
      same(worst[i][0], w.row, `worst ${i} row`);
      same(worst[i][2], w.loss_nats, `worst ${i} loss`);
      same(worst[i][4], w.p_target, `worst ${i} p_target`);
    });
    const bars = await page.$$eval('#data-rel rect.acc', e => e.length);
    check(bars === j.reliability.filter(b => b.count > 0).length, `reliability diagram: ${bars} bars`);
    if (shots) await page.locator('#data').screenshot({ path: join(shots, 'explorer-7-your-data.png') });
    check(errors.length === 0, `no errors in the page: ${errors.join(' | ')}`);
    // A bad upload is an error message on the page, not a crash (the 400 it
    // gets is the one console error expected).
    errors.length = 0;
    await page.setInputFiles('#data-targets', lf);
    await page.click('#data-form button[type=submit]');
    await page.waitForFunction(() => !document.querySelector('#data .status').hidden);
    const msg = await page.$eval('#data .status', e => e.textContent);
    check(/Error/.test(msg), `bad upload reported: ${msg}`);
  }

  if (shots) {
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: join(shots, 'explorer-page.png') });
  }
  check(errors.filter(e => !/status of 400/.test(e)).length === 0, `no other errors in the page: ${errors.join(' | ')}`);
} catch (e) {
  failures++;
  console.error(`FAIL: ${e.stack || e}`);
} finally {
  if (browser) await browser.close();
  cleanup();
}
console.log(`${checks} checks, ${failures} failures`);
process.exit(failures ? 1 : 0);
