// Shared by the panels: the JSON API client, the live-update loop, number
// display and SVG drawing. Every number shown comes from the server (libxent);
// this file only moves it onto the screen.

export const SVGNS = 'http://www.w3.org/2000/svg';

// The unit of every loss on the page ("nats" or "bits"), set by the header switch.
export const settings = { unit: 'nats' };
const unitListeners = [];
export function onUnitChange(f) { unitListeners.push(f); }
export function setUnit(u) {
  settings.unit = u;
  for (const f of unitListeners) f();
}

export async function api(path, body) {
  const init = body === undefined ? {} : body instanceof FormData
    ? { method: 'POST', body }
    : { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) };
  const res = await fetch(path, init);
  const json = await res.json();
  const st = /dur=([\d.]+)/.exec(res.headers.get('Server-Timing') || '');
  api.serverMs = st ? +st[1] : NaN;
  if (!res.ok) throw new Error(json.error || `HTTP ${res.status}`);
  return json;
}

// Timings of every update, input event → DOM updated (ms), read by the tests.
window.__xent = { timings: [], busy: 0 };

// Keeps one panel in step with its inputs: an input event sends the panel's
// state at once, never more than one request in flight per panel; input
// that arrives meanwhile is coalesced, and only the answer to the newest
// state is drawn.
export class Live {
  constructor(section, request, render) {
    this.section = section;
    this.request = request;  // () => [path, body]
    this.render = render;    // (json) => void, updates the DOM
    this.status = section.querySelector('.status');
    this.t0 = 0; this.inflight = false; this.dirty = false;
    this.pending = false;
  }
  schedule() {
    if (!this.t0) this.t0 = performance.now();
    if (!this.pending) { this.pending = true; window.__xent.busy++; this.section.dataset.busy = '1'; }
    // Sent at once; while a request is in flight, newer input only marks
    // the panel dirty and the newest state goes out when the answer is back.
    this.fire();
  }
  async fire() {
    if (this.inflight) { this.dirty = true; return; }
    this.inflight = true;
    const t0 = this.t0;
    this.t0 = 0;
    let result, error;
    const tSend = performance.now();
    try {
      const [path, body] = this.request();
      result = await api(path, body);
    } catch (e) { error = e; }
    const tBack = performance.now();
    this.inflight = false;
    // Newer input arrived meanwhile: draw only its answer, timed from the
    // oldest input not yet on screen.
    if (this.dirty) { this.dirty = false; this.t0 = t0; this.fire(); return; }
    if (error) {
      this.showError(error.message);
    } else {
      this.showError('');
      this.render(result);
      const tDone = performance.now(), ms = tDone - t0;
      // total: input → DOM updated; wait: until sent; fetch: the
      // round trip (request, libxent, JSON); render: drawing the answer.
      window.__xent.timings.push({ panel: this.section.id, ms, wait: tSend - t0, fetch: tBack - tSend, server: api.serverMs, render: tDone - tBack });
      this.section.dataset.updateMs = ms.toFixed(2);
    }
    this.pending = false;
    window.__xent.busy--;
    this.section.dataset.busy = '0';
  }
  showError(msg) {
    if (!this.status) return;
    this.status.textContent = msg ? `Error: ${msg}` : '';
    this.status.hidden = !msg;
  }
}

// ---------------------------------------------------------------- numbers ---
// Shown rounded; the exact double travels in data-value (the tests read it).
export function fmt(v, digits = 5) {
  if (v === 'inf') return '∞';
  if (v === '-inf') return '−∞';
  if (typeof v !== 'number') return String(v);
  if (v === 0) return '0';
  const a = Math.abs(v);
  let s = (a >= 1e-4 && a < 1e6) ? v.toFixed(Math.max(0, digits - 1 - Math.floor(Math.log10(a))))
                                  : v.toExponential(digits - 1);
  if (s.includes('.') && !s.includes('e')) s = s.replace(/0+$/, '').replace(/\.$/, '');
  return s.replace('-', '−');
}
export function setNum(el, v, digits) {
  el.textContent = fmt(v, digits);
  el.dataset.value = typeof v === 'number' ? String(v) : v;
}
export function unitLabel() { return settings.unit; }

// Finite value for drawing (∞ drawn at the chart's edge).
export function finite(v, cap) {
  if (v === 'inf') return cap;
  if (v === '-inf') return -cap;
  return v;
}

// ------------------------------------------------------------------- SVG ---
export function el(tag, attrs = {}, parent) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}
export function html(tag, attrs = {}, parent, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  if (parent) parent.appendChild(e);
  return e;
}

// A bar chart of K values drawn as one SVG path per colour, so an update
// at K = 1000 is a handful of attribute writes, not thousands. signed: bars
// grow up or down from a zero line, coloured by sign.
export class Bars {
  constructor(svg, { height = 140, signed = false, title = '', cls = 'bar' } = {}) {
    this.svg = svg; this.h = height; this.signed = signed; this.cls = cls;
    this.w = 760;
    svg.setAttribute('viewBox', `0 0 ${this.w} ${height + 30}`);
    svg.setAttribute('role', 'img');
    svg.setAttribute('aria-label', title);
    this.g = el('g', { transform: 'translate(40,8)' }, svg);
    this.k = -1;
  }
  // values: numbers (or "inf"); max: the value drawn full height; overlay:
  // optional second series drawn as outlines (e.g. the target p over q).
  update(values, { max, overlay, labels } = {}) {
    const k = values.length, W = this.w - 50, H = this.h;
    const vals = values.map(v => finite(v, max ?? 1));
    let m = max ?? Math.max(1e-12, ...vals.map(Math.abs));
    m = Math.max(m, 1e-12);
    if (this.k !== k) this.rebuild(k, labels);
    const bw = W / k, gap = k > 60 ? 0 : Math.min(4, bw * 0.2), w = Math.max(0.5, bw - gap);
    const zero = this.signed ? H / 2 : H, scale = (this.signed ? H / 2 : H) / m;
    const d = { pos: [], neg: [], zero: [] }, o = [];
    for (let i = 0; i < k; i++) {
      const v = Math.max(-m, Math.min(m, vals[i]));
      const x = (i * bw + gap / 2).toFixed(2), hgt = (Math.abs(v) * scale).toFixed(2);
      const key = !this.signed ? 'pos' : v > 0 ? 'pos' : v < 0 ? 'neg' : 'zero';
      d[key].push(v >= 0 ? `M${x},${zero}v${-hgt}h${w.toFixed(2)}v${hgt}z` : `M${x},${zero}v${hgt}h${w.toFixed(2)}v${-hgt}z`);
      if (overlay) {
        const oh = (Math.max(0, Math.min(m, overlay[i])) * scale).toFixed(2);
        if (+oh > 0) o.push(`M${x},${zero}v${-oh}h${w.toFixed(2)}v${oh}`);
      }
    }
    this.pos.setAttribute('d', d.pos.join(''));
    this.neg.setAttribute('d', d.neg.join(''));
    this.over.setAttribute('d', o.join(''));
    this.axisText.textContent = fmt(m, 3);
    this.axisText2.textContent = this.signed ? fmt(-m, 3) : '0';
  }
  // Calls f(i) when bar i is clicked (the radio buttons are the keyboard way).
  onPick(f) {
    this.svg.style.cursor = 'pointer';
    this.svg.addEventListener('click', ev => {
      const box = this.svg.getBoundingClientRect();
      const x = (ev.clientX - box.left) / box.width * this.w - 40;
      const i = Math.floor(x / ((this.w - 50) / this.k));
      if (i >= 0 && i < this.k) f(i);
    });
  }
  rebuild(k, labels) {
    this.g.replaceChildren();
    this.k = k;
    const W = this.w - 50, H = this.h, bw = W / k;
    const zero = this.signed ? H / 2 : H;
    this.pos = el('path', { class: `${this.cls} ${this.signed ? 'pos' : ''}` }, this.g);
    this.neg = el('path', { class: `${this.cls} neg` }, this.g);
    this.over = el('path', { class: 'overlay' }, this.g);
    el('line', { x1: 0, x2: W, y1: zero, y2: zero, class: 'zero' }, this.g);
    this.axisText = el('text', { x: -4, y: 8, class: 'tick', 'text-anchor': 'end' }, this.g);
    this.axisText2 = el('text', { x: -4, y: H, class: 'tick', 'text-anchor': 'end' }, this.g);
    if (k <= 24)
      for (let i = 0; i < k; i++)
        el('text', { x: (i * bw + bw / 2).toFixed(1), y: H + 16, class: 'tick', 'text-anchor': 'middle' }, this.g)
          .textContent = labels ? labels[i] : String(i);
  }
}

// A line chart: several series of [x, y] points, optional markers and
// segments, fixed axes.
export class Plot {
  constructor(svg, { xmin, xmax, ymin, ymax, xlabel = '', ylabel = '', title = '', w = 640, h = 280 }) {
    Object.assign(this, { svg, xmin, xmax, ymin, ymax, w, h });
    svg.classList.add('plot');
    this.W = w - 60; this.H = h - 45;
    svg.setAttribute('viewBox', `0 0 ${w} ${h}`);
    svg.setAttribute('role', 'img');
    svg.setAttribute('aria-label', title);
    this.g = el('g', { transform: 'translate(48,10)' }, svg);
    this.axes(xlabel, ylabel);
    this.layer = el('g', {}, this.g);
  }
  x(v) { return ((v - this.xmin) / (this.xmax - this.xmin)) * this.W; }
  y(v) { return this.H - ((Math.max(this.ymin, Math.min(this.ymax, v)) - this.ymin) / (this.ymax - this.ymin)) * this.H; }
  axes(xlabel, ylabel) {
    this.axesG = el('g', { class: 'axis' }, this.g);
    this.axesG.replaceChildren();
    el('line', { x1: 0, x2: this.W, y1: this.H, y2: this.H }, this.axesG);
    el('line', { x1: 0, x2: 0, y1: 0, y2: this.H }, this.axesG);
    for (let i = 0; i <= 4; i++) {
      const xv = this.xmin + (i / 4) * (this.xmax - this.xmin), yv = this.ymin + (i / 4) * (this.ymax - this.ymin);
      el('text', { x: this.x(xv), y: this.H + 14, class: 'tick', 'text-anchor': 'middle' }, this.axesG).textContent = fmt(xv, 3);
      el('text', { x: -4, y: this.y(yv) + 4, class: 'tick', 'text-anchor': 'end' }, this.axesG).textContent = fmt(yv, 3);
    }
    el('text', { x: this.W / 2, y: this.H + 32, class: 'label', 'text-anchor': 'middle' }, this.axesG).textContent = xlabel;
    el('text', { x: -36, y: this.H / 2, class: 'label', 'text-anchor': 'middle', transform: `rotate(-90 -36 ${this.H / 2})` }, this.axesG).textContent = ylabel;
  }
  setY(ymin, ymax, xlabel, ylabel) {
    this.ymin = ymin; this.ymax = ymax;
    this.axesG.remove();
    this.axes(xlabel, ylabel);
    this.g.insertBefore(this.axesG, this.layer);
  }
  clear() { this.layer.replaceChildren(); }
  line(points, cls) {
    const d = points.filter(p => typeof p[1] === 'number').map((p, i) => `${i ? 'L' : 'M'}${this.x(p[0]).toFixed(1)},${this.y(p[1]).toFixed(1)}`).join('');
    return el('path', { d, class: `series ${cls}` }, this.layer);
  }
  dot(x, y, cls) { return el('circle', { cx: this.x(x), cy: this.y(y), r: 5, class: cls }, this.layer); }
  text(x, y, s, cls = 'note') { const t = el('text', { x: this.x(x) + 6, y: this.y(y) - 6, class: cls }, this.layer); t.textContent = s; return t; }
}

// Fills a <tbody> with rows of cells, reusing the row elements. rows: arrays
// of values (numbers set through setNum, strings as text).
export function fillTable(tbody, rows, digits = 5) {
  while (tbody.rows.length > rows.length) tbody.deleteRow(-1);
  for (let i = 0; i < rows.length; i++) {
    let tr = tbody.rows[i];
    if (!tr || tr.cells.length !== rows[i].length) {
      if (tr) tr.remove();
      tr = tbody.insertRow(i);
      for (let j = 0; j < rows[i].length; j++) tr.insertCell();
    }
    for (let j = 0; j < rows[i].length; j++) {
      const v = rows[i][j], c = tr.cells[j];
      if (typeof v === 'number' || v === 'inf' || v === '-inf') {
        if (c.dataset.value !== String(v)) setNum(c, v, digits);
      } else if (v && typeof v === 'object') {
        c.textContent = v.text; c.className = v.cls || '';
      } else if (c.textContent !== String(v)) {
        c.textContent = v;
      }
    }
  }
}

// A long table shows only the rows in view (plus a margin), so an update at
// K = 1000 writes ~40 rows; scrolling draws the others from the same answer.
export class VirtualTable {
  constructor(scroller, tbody, rowHeight = 25) {
    this.scroller = scroller; this.tbody = tbody; this.rh = rowHeight; this.rows = [];
    this.top = tbody.parentElement.createTBody(); this.top.className = 'spacer';
    tbody.parentElement.insertBefore(this.top, tbody);
    this.topRow = this.top.insertRow().insertCell();
    this.bottom = tbody.parentElement.createTBody(); this.bottom.className = 'spacer';
    this.bottomRow = this.bottom.insertRow().insertCell();
    scroller.addEventListener('scroll', () => this.draw());
  }
  set(rows) { this.rows = rows; this.draw(); }
  draw() {
    const n = this.rows.length, view = Math.ceil((this.scroller.clientHeight || 400) / this.rh);
    const first = Math.max(0, Math.floor(this.scroller.scrollTop / this.rh) - 5);
    const last = Math.min(n, first + view + 10);
    this.topRow.style.height = `${first * this.rh}px`;
    this.bottomRow.style.height = `${(n - last) * this.rh}px`;
    fillTable(this.tbody, this.rows.slice(first, last));
    this.tbody.dataset.first = String(first);
  }
}

// Sets p[i] = v and rescales the other entries so the vector still sums to
// 1 (the editing rule of the distribution editors; the server checks the sum).
export function renormalize(p, i, v) {
  v = Math.max(0, Math.min(1, v));
  const rest = p.reduce((s, x, j) => (j === i ? s : s + x), 0);
  const out = p.map((x, j) => (j === i ? v : rest > 0 ? x * (1 - v) / rest : (1 - v) / (p.length - 1)));
  if (p.length === 1) out[0] = 1;
  return out;
}

// A distribution editor: K vertical bars, each a keyboard-operable slider
// (arrows ±0.01, PageUp/PageDown ±0.1, Home/End 0/1) and draggable.
export class DistEditor {
  constructor(svg, name, values, onchange) {
    this.svg = svg; this.name = name; this.values = values.slice(); this.onchange = onchange;
    this.h = 120; this.w = 360;
    svg.setAttribute('viewBox', `0 0 ${this.w} ${this.h + 24}`);
    svg.classList.add('editor');
    this.build();
  }
  set(values) { this.values = values.slice(); this.build(); }
  build() {
    this.svg.replaceChildren();
    const k = this.values.length, bw = this.w / k;
    this.bars = [];
    for (let i = 0; i < k; i++) {
      const g = el('g', { tabindex: 0, role: 'slider', 'aria-label': `${this.name}[${i}]`, 'aria-valuemin': 0, 'aria-valuemax': 1, class: 'handle', 'data-index': i }, this.svg);
      el('rect', { x: i * bw + 3, y: 0, width: bw - 6, height: this.h, class: 'track' }, g);
      const r = el('rect', { x: i * bw + 3, width: bw - 6, class: `bar ${this.name}` }, g);
      const t = el('text', { x: i * bw + bw / 2, y: this.h + 16, 'text-anchor': 'middle', class: 'tick' }, g);
      this.bars.push({ g, r, t });
      const setFromY = (ev) => {
        const box = this.svg.getBoundingClientRect();
        const y = (ev.clientY - box.top) / box.height * (this.h + 24);
        this.change(i, 1 - y / this.h);
      };
      g.addEventListener('pointerdown', (ev) => { g.setPointerCapture(ev.pointerId); g.focus(); setFromY(ev); });
      g.addEventListener('pointermove', (ev) => { if (g.hasPointerCapture(ev.pointerId)) setFromY(ev); });
      g.addEventListener('keydown', (ev) => {
        const d = { ArrowUp: 0.01, ArrowRight: 0.01, ArrowDown: -0.01, ArrowLeft: -0.01, PageUp: 0.1, PageDown: -0.1 }[ev.key];
        if (d !== undefined) this.change(i, this.values[i] + d);
        else if (ev.key === 'Home') this.change(i, 0);
        else if (ev.key === 'End') this.change(i, 1);
        else return;
        ev.preventDefault();
      });
    }
    this.draw();
  }
  change(i, v) {
    this.values = renormalize(this.values, i, v);
    this.draw();
    this.onchange(this.values);
  }
  // The bars show the input being edited; the numbers in the tables are the
  // server's echo of it.
  draw() {
    this.values.forEach((v, i) => {
      const b = this.bars[i];
      b.r.setAttribute('y', (this.h * (1 - v)).toFixed(2));
      b.r.setAttribute('height', (this.h * v).toFixed(2));
      b.t.textContent = `${this.name}${i}`;
      b.g.setAttribute('aria-valuenow', v.toFixed(4));
      b.g.setAttribute('aria-valuetext', `${this.name}[${i}] = ${v.toFixed(3)}`);
    });
  }
}
