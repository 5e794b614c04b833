// Panel 3: −log p with its tangent, and binary cross-entropy's two curves.
import { Live, Plot, setNum, onUnitChange, settings } from './lib.js';

export function initCurve() {
  const section = document.getElementById('curve');
  const $ = id => document.getElementById(id);
  const slider = $('curve-p');
  const live = new Live(section, () => ['/api/curve', { p: +slider.value, unit: settings.unit, samples: 199 }], render);
  const plot = new Plot($('curve-plot'), { xmin: 0, xmax: 1, ymin: 0, ymax: 5, xlabel: 'p (probability given to the class)',
                                         ylabel: 'loss', title: 'minus log p and minus log of 1 minus p, with the tangent at p' });
  slider.addEventListener('input', () => live.schedule());
  onUnitChange(() => live.schedule());

  function render(r) {
    const a = r.at;
    const ymax = settings.unit === 'bits' ? 7 : 5;
    if (plot.ymax !== ymax) plot.setY(0, ymax, 'p (probability given to the class)', `loss (${r.unit})`);
    plot.clear();
    plot.line(r.points.map(q => [q[0], q[1]]), 'y1');
    plot.line(r.points.map(q => [q[0], q[2]]), 'y0');
    // The tangent: the line through (p, −log p) with slope −1/p, drawn ±0.15 around p.
    const d = 0.15;
    plot.line([[a.p - d, a.neg_log_p - d * a.slope_y1], [a.p + d, a.neg_log_p + d * a.slope_y1]], 'tangent');
    plot.dot(a.p, a.neg_log_p, 'pt y1');
    plot.dot(a.p, a.neg_log_1mp, 'pt y0');
    plot.text(0.02, r.points[3][1], 'y = 1: −log p', 'note y1');
    plot.text(0.75, r.points[r.points.length - 4][2], 'y = 0: −log(1−p)', 'note y0');
    setNum($('curve-pv'), a.p);
    setNum($('curve-y1'), a.neg_log_p);
    setNum($('curve-s1'), a.slope_y1);
    setNum($('curve-fd'), a.slope_fd_rel_error, 2);
    setNum($('curve-y0'), a.neg_log_1mp);
    setNum($('curve-s0'), a.slope_y0);
    setNum($('curve-z'), a.logit);
    setNum($('curve-g1'), a.logit_grad_y1);
    setNum($('curve-g0'), a.logit_grad_y0);
  }
  live.schedule();
}
