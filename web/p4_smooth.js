// Panel 4: label smoothing, hard target vs both conventions, side by side.
import { Live, Bars, setNum, html, onUnitChange, settings } from './lib.js';

const CASES = [
  { key: 'hard', title: 'hard one-hot target' },
  { key: 'uniform', title: 'uniform: ε/K everywhere' },
  { key: 'off-target', title: 'off-target: ε/(K−1) on the others' },
];

export function initSmooth() {
  const section = document.getElementById('smooth');
  const $ = id => document.getElementById(id);
  const eps = $('smooth-eps');
  let logits = [3, 1, 0.5, 0, -1];
  const request = () => {
    const t = Math.max(0, Math.round(+$('smooth-target').value || 0));
    const base = { logits, target: t, unit: settings.unit };
    return ['/api/batch', { requests: [
      base,
      { ...base, smoothing: +eps.value, smoothing_mode: 'uniform' },
      { ...base, smoothing: +eps.value, smoothing_mode: 'off-target' },
    ] }];
  };
  const live = new Live(section, request, render);
  const cols = CASES.map(c => {
    const col = html('div', { class: 'col', 'data-case': c.key }, $('smooth-cols'));
    html('h3', {}, col, c.title);
    html('div', { class: 'cap' }, col, 'target p');
    const tb = new Bars(html('canvas', {}, html('div', {}, col)), { height: 80, title: `${c.title}: target` });
    html('div', { class: 'cap' }, col, 'gradient q − p');
    const gb = new Bars(html('canvas', {}, html('div', {}, col)), { height: 80, signed: true, cls: 'bar grad', title: `${c.title}: gradient` });
    const t = html('div', { class: 'totals small' }, col);
    const num = (label, cls) => { const s = html('span', {}, t, `${label} = `); return html('b', { class: `n ${cls}` }, s); };
    return { tb, gb, loss: num('loss', 'loss'), h: num('H(p)', 'entropy'), kl: num('KL(p‖q)', 'kl'), pt: num('p(target)', 'ptarget'), gt: num('∂/∂z_target', 'gtarget') };
  });
  const parseLogits = () => {
    const v = $('smooth-logits').value.split(',').map(s => s.trim()).filter(s => s.length).map(Number);
    if (v.length >= 2 && v.every(Number.isFinite)) { logits = v; live.showError(''); return true; }
    live.showError('logits: give at least two numbers, separated by commas');
    return false;
  };
  eps.addEventListener('input', () => live.schedule());
  $('smooth-logits').addEventListener('change', () => { if (parseLogits()) live.schedule(); });
  $('smooth-target').addEventListener('change', () => live.schedule());
  onUnitChange(() => live.schedule());

  function render(r) {
    setNum($('smooth-epsv'), +eps.value);
    const gmax = Math.max(1e-6, ...r.results.flatMap(x => x.grad.map(Math.abs)));
    r.results.forEach((x, i) => {
      const c = cols[i], t = x.verdict.target_class;
      c.tb.update(x.targets, { max: 1 });
      c.gb.update(x.grad, { max: gmax });
      setNum(c.loss, x.loss); setNum(c.h, x.entropy); setNum(c.kl, x.kl);
      setNum(c.pt, x.targets[t]); setNum(c.gt, x.grad[t]);
    });
  }
  live.schedule();
}
