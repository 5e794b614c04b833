// Panel 7: your own data: `xent eval` on an uploaded .npy pair, as a
// reliability diagram and the highest-loss rows.
import { api, el, fillTable, setNum, onUnitChange, settings, Plot } from './lib.js';

export function initData() {
  const section = document.getElementById('data');
  const $ = id => document.getElementById(id);
  const status = section.querySelector('.status');
  let last = null;
  const plot = new Plot($('data-rel'), { xmin: 0, xmax: 1, ymin: 0, ymax: 1, xlabel: 'confidence (top probability)', ylabel: 'accuracy', title: 'reliability diagram', w: 420, h: 320 });

  $('data-form').addEventListener('submit', async ev => {
    ev.preventDefault();
    const form = new FormData();
    const logits = $('data-logits').files[0], targets = $('data-targets').files[0];
    if (!logits || !targets) { status.hidden = false; status.textContent = 'Error: choose both files'; return; }
    form.append('logits', logits, logits.name);
    form.append('targets', targets, targets.name);
    form.append('bins', String(Math.max(1, Math.min(100, Math.round(+$('data-bins').value || 10)))));
    section.dataset.busy = '1';
    try {
      last = await api('/api/eval', form);
      status.hidden = true;
      render(last);
    } catch (e) {
      status.hidden = false;
      status.textContent = `Error: ${e.message}`;
    }
    section.dataset.busy = '0';
  });
  onUnitChange(() => { if (last) render(last); });

  function render(r) {
    setNum($('data-rows'), r.rows_evaluated);
    setNum($('data-loss'), settings.unit === 'bits' ? r.loss_bits : r.loss_nats);
    setNum($('data-ppl'), r.perplexity);
    setNum($('data-acc'), r.accuracy);
    setNum($('data-ece'), r.ece);
    setNum($('data-brier'), r.brier);
    plot.clear();
    plot.line([[0, 0], [1, 1]], 'diag');
    for (const b of r.reliability) {
      const x0 = plot.x(b.lo), x1 = plot.x(b.hi);
      if (!b.count) continue;
      el('rect', { x: x0 + 1, width: Math.max(0, x1 - x0 - 2), y: plot.y(b.accuracy), height: plot.y(0) - plot.y(b.accuracy), class: 'acc' }, plot.layer);
      el('rect', { x: x0 + 1, width: Math.max(0, x1 - x0 - 2), y: plot.y(Math.max(b.accuracy, b.confidence)), height: Math.abs(plot.y(b.accuracy) - plot.y(b.confidence)), class: 'gap' }, plot.layer);
    }
    plot.text(0.02, 0.93, 'perfect calibration', 'note');
    fillTable($('data-worst'), r.highest_loss_rows.map(w => [w.row, w.target, w.loss_nats, w.predicted, w.p_target]));
  }
}
