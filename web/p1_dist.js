// Panel 1: P and Q, the term table and H(P,Q) = H(P) + KL(P‖Q).
import { Live, DistEditor, fillTable, setNum, el, fmt, finite, onUnitChange, settings } from './lib.js';

export function initDist() {
  const section = document.getElementById('dist');
  const $ = id => document.getElementById(id);
  let P = [0.6, 0.25, 0.1, 0.05], Q = [0.4, 0.3, 0.2, 0.1];
  const live = new Live(section, () => ['/api/explain', { p: P, q: Q, unit: settings.unit }], render);
  const ep = new DistEditor($('dist-p'), 'p', P, v => { P = v; live.schedule(); });
  const eq = new DistEditor($('dist-q'), 'q', Q, v => { Q = v; live.schedule(); });
  $('dist-k').addEventListener('change', () => {
    const k = Math.max(2, Math.min(12, Math.round(+$('dist-k').value || 4)));
    const uniform = Array(k).fill(1 / k);
    P = uniform.slice(); P[0] += 0.5; P = P.map(x => x / 1.5);  // a peaked P against a uniform Q
    Q = uniform;
    ep.set(P); eq.set(Q); live.schedule();
  });
  // Exposed for the tests and for reproducing a case: set both vectors at once.
  section.setCase = (p, q) => { P = p.slice(); Q = q.slice(); ep.set(P); eq.set(Q); live.schedule(); };
  onUnitChange(() => live.schedule());

  const stack = $('dist-stack');
  stack.setAttribute('viewBox', '0 0 760 64');
  stack.setAttribute('role', 'img');
  stack.setAttribute('aria-label', 'H(P,Q) as H(P) stacked with KL(P‖Q)');
  const segH = el('rect', { x: 0, y: 4, height: 30, class: 'seg-h' }, stack);
  const segK = el('rect', { y: 4, height: 30, class: 'seg-kl' }, stack);
  const labTotal = el('text', { y: 25, class: 'note' }, stack);
  const labH = el('text', { x: 2, y: 52, class: 'tick' }, stack);
  const labK = el('text', { y: 52, class: 'tick' }, stack);
  const terms = $('dist-terms');
  terms.setAttribute('role', 'img');
  terms.setAttribute('aria-label', 'per outcome, minus p log q as minus p log p stacked with p log p over q');
  function drawTerms(rows) {
    const k = rows.length, W = 700, H = 120, bw = Math.min(90, W / k);
    terms.setAttribute('viewBox', `0 0 ${W} ${H + 22}`);
    terms.replaceChildren();
    const cap = Math.max(1e-9, ...rows.map(w => Math.max(finite(w.neg_p_log_p, 0), finite(w.neg_p_log_q, 0))));
    const y = v => H - (Math.min(v, cap * 1.05) / (cap * 1.05)) * H;
    rows.forEach((w, i) => {
      const x = 30 + i * bw, h = w.neg_p_log_p, d = finite(w.p_log_p_over_q, cap), t = finite(w.neg_p_log_q, cap * 1.05);
      el('rect', { x, width: bw - 10, y: y(h), height: H - y(h), class: 'seg-h' }, terms);
      if (d >= 0) el('rect', { x, width: bw - 10, y: y(h + d), height: y(h) - y(h + d), class: 'seg-kl' }, terms);
      else el('rect', { x, width: bw - 10, y: y(h), height: y(h + d) - y(h), class: 'seg-kl-neg' }, terms);
      el('line', { x1: x - 3, x2: x + bw - 7, y1: y(t), y2: y(t), class: 'tick-total' }, terms);
      el('text', { x: x + (bw - 10) / 2, y: H + 16, class: 'tick', 'text-anchor': 'middle' }, terms).textContent = String(i);
    });
    el('line', { x1: 24, x2: W, y1: H, y2: H, class: 'zero' }, terms);
  }

  function render(r) {
    drawTerms(r.rows);
    setNum($('dist-entropy'), r.entropy);
    setNum($('dist-kl'), r.kl);
    setNum($('dist-ce'), r.cross_entropy);
    setNum($('dist-check'), r.check.entropy_plus_kl);
    fillTable($('dist-rows'), r.rows.map((w, i) => [i, w.p, w.q, w.neg_p_log_p, w.neg_p_log_q, w.p_log_p_over_q]));
    // The stacked bar: H(P) then KL, together H(P,Q); scaled to the larger
    // of H(P,Q) and log K, ∞ drawn at the end of the scale.
    const cap = Math.max(Math.log(r.k) / (settings.unit === 'bits' ? Math.LN2 : 1), 1e-9);
    const total = Math.max(finite(r.cross_entropy, cap), cap);
    const h = finite(r.entropy, cap), k = Math.min(finite(r.kl, cap), total - h);
    const sx = 520 / total;
    segH.setAttribute('width', (h * sx).toFixed(1));
    segK.setAttribute('x', (h * sx).toFixed(1));
    segK.setAttribute('width', Math.max(0, k * sx).toFixed(1));
    labTotal.setAttribute('x', ((h + Math.max(0, k)) * sx + 8).toFixed(1));
    labTotal.textContent = `H(P,Q) = ${fmt(r.cross_entropy, 4)} ${settings.unit}`;
    labH.textContent = `H(P) = ${fmt(r.entropy, 4)}`;
    labK.setAttribute('x', (Math.max(h * sx, 110) + 4).toFixed(1));
    labK.textContent = `KL(P‖Q) = ${fmt(r.kl, 4)}`;
  }
  live.schedule();
}
