// Panel 6: the double-softmax bug, loss and gradient norms beside the right call.
import { Live, Plot, setNum, onUnitChange, settings } from './lib.js';

const Z = [2, 0.5, 0, -1];
const S = Array.from({ length: 41 }, (_, i) => i * 0.25);

export function initDouble() {
  const section = document.getElementById('double');
  const $ = id => document.getElementById(id);
  const slider = $('double-s');
  const req = s => ({ logits: Z.map(z => z * s), target: 0, unit: settings.unit, double_softmax: true });
  const live = new Live(section, () => ['/api/batch', { requests: [req(+slider.value), ...S.map(req)] }], render);
  const plot = new Plot($('double-sweep'), { xmin: 0, xmax: 10, ymin: 0, ymax: 1.6, xlabel: 'scale s of the logits', ylabel: 'loss', title: 'the right loss falls to 0, the double-softmax loss stops at its floor' });
  slider.addEventListener('input', () => live.schedule());
  onUnitChange(() => live.schedule());

  function render(r) {
    const [cur, ...sweep] = r.results;
    const d = cur.double_softmax;
    setNum($('double-sv'), +slider.value);
    setNum($('double-loss'), d.correct_loss);
    setNum($('double-gnorm'), d.correct_grad_norm);
    setNum($('double-bloss'), d.loss);
    setNum($('double-bgnorm'), d.grad_norm);
    setNum($('double-floor'), d.loss_floor);
    const ymax = settings.unit === 'bits' ? 2.2 : 1.6;
    if (plot.ymax !== ymax) plot.setY(0, ymax, 'scale s of the logits', `loss (${settings.unit})`);
    plot.clear();
    plot.line(S.map((s, i) => [s, sweep[i].double_softmax.correct_loss]), 'ce');
    plot.line(S.map((s, i) => [s, sweep[i].double_softmax.loss]), 'mse');
    plot.line([[0, d.loss_floor], [10, d.loss_floor]], 'floor');
    plot.dot(+slider.value, d.correct_loss, 'pt ce');
    plot.dot(+slider.value, d.loss, 'pt mse');
    plot.text(6.5, d.loss_floor, 'floor log(1 + (K−1)/e)', 'note');
    plot.text(0.2, sweep[2].double_softmax.loss + 0.1, 'double softmax', 'note mse');
    plot.text(5, sweep[20].double_softmax.correct_loss + 0.05, 'right', 'note ce');
  }
  live.schedule();
}
