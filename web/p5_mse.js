// Panel 5: cross-entropy vs MSE through the softmax, for the same prediction.
import { Live, Bars, Plot, setNum, api, onUnitChange, settings } from './lib.js';

const BASE = [2, 0, 0, 0];   // the target, class 0, starts ahead
const Z1 = Array.from({ length: 33 }, (_, i) => -4 + i * 0.5);  // the sweep of z₁

export function initMse() {
  const section = document.getElementById('mse');
  const $ = id => document.getElementById(id);
  const slider = $('mse-z');
  const logits = z1 => [BASE[0], z1, BASE[2], BASE[3]];
  const point = z1 => ({ logits: logits(z1), target: 0, unit: settings.unit, compare_mse: true });
  // One round trip: the current point and the sweep.
  const live = new Live(section, () => ['/api/batch', { requests: [point(+slider.value), ...Z1.map(point)] }], render);
  const ceBars = new Bars($('mse-ce'), { signed: true, cls: 'bar grad', height: 110, title: 'cross-entropy gradient per class' });
  const mseBars = new Bars($('mse-mse'), { signed: true, cls: 'bar grad', height: 110, title: 'MSE gradient per class' });
  const plot = new Plot($('mse-sweep'), { xmin: -4, xmax: 12, ymin: 0, ymax: 1.5, xlabel: 'z₁ (logit of the wrong class)', ylabel: 'gradient norm', title: 'gradient norms of CE and MSE as the model becomes confidently wrong' });
  slider.addEventListener('input', () => live.schedule());
  onUnitChange(() => live.schedule());

  function render(r) {
    const [cur, ...sweep] = r.results;
    const z1 = cur.logits[1];
    setNum($('mse-zv'), z1);
    const m = Math.max(1e-6, ...cur.grad.map(Math.abs), ...cur.mse.grad.map(Math.abs));
    ceBars.update(cur.grad, { max: m });
    mseBars.update(cur.mse.grad, { max: m });
    setNum($('mse-q0'), cur.probs[0]);
    setNum($('mse-celoss'), cur.loss);
    setNum($('mse-mseloss'), cur.mse.loss);
    setNum($('mse-cenorm'), cur.mse.ce_grad_norm);
    setNum($('mse-msenorm'), cur.mse.grad_norm);
    const ymax = settings.unit === 'bits' ? 2.2 : 1.5;
    if (plot.ymax !== ymax) plot.setY(0, ymax, 'z₁ (logit of the wrong class)', 'gradient norm');
    plot.clear();
    plot.line(sweep.map(s => [s.logits[1], s.mse.ce_grad_norm]), 'ce');
    plot.line(sweep.map(s => [s.logits[1], s.mse.grad_norm]), 'mse');
    plot.dot(z1, cur.mse.ce_grad_norm, 'pt ce');
    plot.dot(z1, cur.mse.grad_norm, 'pt mse');
    plot.text(-3.8, sweep[0].mse.ce_grad_norm + 0.08, '‖∇CE‖', 'note ce');
    plot.text(8, sweep[24].mse.grad_norm + 0.1, '‖∇MSE‖ → 0', 'note mse');
  }
  live.schedule();
}
