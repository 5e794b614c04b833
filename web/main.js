// Wires the page: the unit switch, the version line, and the seven panels.
import { api, setUnit, settings, onUnitChange } from './lib.js';
import { initDist } from './p1_dist.js';
import { initLogits } from './p2_logits.js';
import { initCurve } from './p3_curve.js';
import { initSmooth } from './p4_smooth.js';
import { initMse } from './p5_mse.js';
import { initDouble } from './p6_double.js';
import { initData } from './p7_data.js';

function showUnits() {
  for (const s of document.querySelectorAll('.u')) s.textContent = settings.unit;
}

async function start() {
  for (const r of document.querySelectorAll('input[name=unit]'))
    r.addEventListener('change', () => { if (r.checked) setUnit(r.value); });
  onUnitChange(showUnits);
  showUnits();
  api('/api/version').then(v => { document.getElementById('version').textContent = `xent ${v.version}`; });
  const presets = (await api('/api/presets')).presets;
  initDist();
  initLogits(presets);
  initCurve();
  initSmooth();
  initMse();
  initDouble();
  initData();
  document.body.dataset.ready = '1';
}
start();
