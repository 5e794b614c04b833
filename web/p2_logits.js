// Panel 2: logits → softmax → loss → gradient, with presets and soft targets.
import { Live, Bars, VirtualTable, setNum, html, renormalize, onUnitChange, settings } from './lib.js';

export function initLogits(presets) {
  const section = document.getElementById('logits');
  const $ = id => document.getElementById(id);
  const state = { z: [2, 1, 0.5, -0.5, -1], target: 0, soft: false, p: null };

  const request = () => {
    const body = { logits: state.z, unit: settings.unit, compact: true };
    if (state.soft) body.p = state.p; else body.target = state.target;
    return ['/api/explain', body];
  };
  const live = new Live(section, request, render);
  const qBars = new Bars($('logits-q'), { title: 'softmax probabilities and target' });
  const termBars = new Bars($('logits-terms'), { title: 'per-class loss terms', cls: 'bar term' });
  const table = new VirtualTable($('logits-scroll'), $('logits-rows'));
  // A click on a bar of q makes that class the (hard) target.
  qBars.onPick(i => {
    if (state.soft) return;
    state.target = i;
    rows.forEach((r, j) => { r.t.checked = j === i; });
    live.schedule();
  });
  const gradBars = new Bars($('logits-grad'), { signed: true, title: 'gradient q minus p, by sign', cls: 'bar grad' });

  // One row per class: the logit slider, the target radio, the soft-target
  // slider. Rows come in blocks of 50, each skipped by layout and paint while
  // off screen (content-visibility): one block per 50 rows keeps the
  // browser's per-frame visibility check at 20 boxes for K = 1000, not 1000.
  const box = $('logits-sliders');
  const BLOCK = 50;
  let rows = [];
  function buildSliders() {
    box.replaceChildren();
    let block;
    rows = state.z.map((z, i) => {
      if (i % BLOCK === 0) {
        block = html('div', { class: 'slider-block' }, box);
        block.style.containIntrinsicSize = `auto ${Math.min(BLOCK, state.z.length - i) * 28}px`;
      }
      const row = html('div', { class: 'slider-row' }, block);
      html('label', { for: `z${i}` }, row, `z${i}`);
      const s = html('input', { id: `z${i}`, type: 'range', min: -10, max: 10, step: 0.1, 'aria-label': `logit of class ${i}` }, row);
      s.value = z;
      s.addEventListener('input', () => { state.z[i] = +s.value; live.schedule(); });
      const shown = html('output', { class: 'n', for: `z${i}` }, row);
      const t = html('input', { type: 'radio', name: 'logits-target', 'aria-label': `class ${i} is the target`, title: 'target' }, row);
      t.checked = i === state.target;
      t.addEventListener('change', () => { if (t.checked) { state.target = i; live.schedule(); } });
      const ps = html('input', { type: 'range', min: 0, max: 1, step: 0.01, class: 'soft', 'aria-label': `target probability of class ${i}` }, row);
      ps.addEventListener('input', () => {
        state.p = renormalize(state.p, i, +ps.value);
        rows.forEach((r, j) => { if (j !== i) r.ps.value = state.p[j]; });
        live.schedule();
      });
      return { s, shown, t, ps };
    });
    showMode();
  }
  function showMode() {
    section.classList.toggle('soft-mode', state.soft);
    $('logits-soft').checked = state.soft;
    if (state.soft && (!state.p || state.p.length !== state.z.length)) {
      state.p = state.z.map((_, i) => (i === state.target ? 1 : 0));
    }
    rows.forEach((r, i) => {
      r.t.checked = i === state.target;
      if (state.p) r.ps.value = state.p[i];
    });
  }
  function setCase(z, target, p) {
    const rebuild = z.length !== state.z.length;
    state.z = z.slice();
    if (p) { state.soft = true; state.p = p.slice(); } else { state.soft = false; state.target = target; }
    if (rebuild) buildSliders();
    rows.forEach((r, i) => { r.s.value = state.z[i]; });
    showMode();
    live.schedule();
  }
  section.setCase = setCase;
  section.getCase = () => JSON.parse(JSON.stringify(state));

  for (const pr of presets) {
    const b = html('button', { type: 'button', 'data-preset': pr.name }, $('logits-presets'), pr.name);
    b.addEventListener('click', () => {
      $('logits-lesson').textContent = pr.lesson;
      $('logits-k').value = pr.logits.length;
      setCase(pr.logits, pr.target, pr.p);
    });
  }
  $('logits-soft').addEventListener('change', () => { state.soft = $('logits-soft').checked; showMode(); live.schedule(); });
  $('logits-k').addEventListener('change', () => {
    const k = Math.max(2, Math.min(1000, Math.round(+$('logits-k').value || 5)));
    const z = Array.from({ length: k }, (_, i) => state.z[i] ?? 0);
    state.target = Math.min(state.target, k - 1);
    state.p = null;
    setCase(z, state.target, state.soft ? z.map((_, i) => (i === state.target ? 1 : 0)) : null);
  });
  $('logits-random').addEventListener('click', () => {
    setCase(state.z.map(() => Math.round((Math.random() * 8 - 4) * 10) / 10), state.target,
            state.soft ? state.p : null);
  });
  onUnitChange(() => live.schedule());

  const RAISE = { text: 'raise ↑', cls: 'neg' }, LOWER = { text: 'lower ↓', cls: 'pos' }, FLAT = { text: '—' };
  function render(r) {
    const k = r.k;
    qBars.update(r.probs, { max: 1, overlay: r.targets });
    termBars.update(r.loss_terms);
    const gmax = Math.max(...r.grad.map(g => Math.abs(g)), 1e-6);
    gradBars.update(r.grad, { max: gmax });
    setNum($('logits-loss'), r.loss);
    setNum($('logits-ppl'), r.perplexity);
    setNum($('logits-entropy'), r.entropy);
    setNum($('logits-kl'), r.kl);
    const v = r.verdict;
    $('logits-verdict').textContent = `${v.label} (top class ${v.top_class}, target ${v.target_class})`;
    $('logits-verdict').dataset.value = v.label;
    // The echo beside each slider; past 100 classes the table alone shows it.
    if (k <= 100) r.logits.forEach((z, i) => { if (rows[i]) setNum(rows[i].shown, z, 4); });
    table.set(k, i => [i, r.logits[i], r.probs[i], r.targets[i], r.loss_terms[i], r.grad[i],
      r.grad[i] < 0 ? RAISE : r.grad[i] > 0 ? LOWER : FLAT]);
    section.dataset.k = String(k);
  }
  buildSliders();
  live.schedule();
}
