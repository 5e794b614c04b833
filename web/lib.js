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
  const s = fmt(v, digits), t = el.firstChild;
  // Rewriting the text node in place (rather than textContent, which
  // replaces it) is the cheapest change for the layout that follows.
  if (t && t.nodeType === Node.TEXT_NODE && !t.nextSibling) { if (t.data !== s) t.data = s; }
  else el.textContent = s;
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

// A bar chart of K values, drawn on a <canvas>: an update at K = 1000 is
// one fill per colour straight into the bitmap, with nothing for the
// browser to lay out afterwards (as SVG paths of 1000 bars each, the page
// spent ~1.6 ms per update laying out the three charts of panel 2, and as
// much again painting them). signed: bars grow up or down from a zero line,
// coloured by sign. Coordinates are those of a 760-wide view box, scaled to
// the canvas's size on screen (kept sharp by a ResizeObserver).
export class Bars {
  constructor(canvas, { height = 140, signed = false, title = '', cls = 'bar' } = {}) {
    this.c = canvas; this.h = height; this.signed = signed;
    this.w = 760; this.vh = height + 30;
    canvas.classList.add('bars', ...cls.split(' ').filter(c => c !== 'bar'));
    canvas.setAttribute('role', 'img');
    canvas.setAttribute('aria-label', title);
    canvas.style.aspectRatio = `${this.w} / ${this.vh}`;
    canvas.width = this.w; canvas.height = this.vh;
    this.ctx = canvas.getContext('2d');
    this.k = 0; this.data = null; this.colours = null;
    new ResizeObserver(([e]) => {
      const dpr = window.devicePixelRatio || 1, w = Math.round(e.contentRect.width * dpr);
      if (w > 0 && w !== canvas.width) {
        canvas.width = w; canvas.height = Math.round(w * this.vh / this.w);
        this.draw();
      }
    }).observe(canvas);
  }
  // values: numbers (or "inf"); max: the value drawn full height; overlay:
  // optional second series drawn as outlines (e.g. the target p over q);
  // labels: class names under the bars (up to 24 bars).
  update(values, { max, overlay, labels } = {}) {
    this.data = { values, max, overlay, labels };
    this.k = values.length;
    this.draw();
  }
  draw() {
    if (!this.data) return;
    // The colours are the page's CSS (style.css, .bars), read once.
    if (!this.colours) {
      const cs = getComputedStyle(this.c), v = n => cs.getPropertyValue(n).trim();
      this.colours = { pos: v('--bar-pos'), neg: v('--bar-neg'), over: v('--p'), zero: '#98a1b3', tick: v('--muted'), font: `11px ${cs.fontFamily}` };
    }
    const { values, overlay, labels } = this.data, col = this.colours;
    const k = values.length, W = this.w - 50, H = this.h, ctx = this.ctx;
    let m = this.data.max;
    if (m === undefined) {
      m = 1e-12;
      for (let i = 0; i < k; i++) { const a = Math.abs(finite(values[i], 1)); if (a > m) m = a; }
    }
    m = Math.max(m, 1e-12);
    const bw = W / k, gap = k > 60 ? 0 : Math.min(4, bw * 0.2), w = Math.max(0.5, bw - gap);
    const zero = this.signed ? H / 2 : H, scale = (this.signed ? H / 2 : H) / m;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this.c.width, this.c.height);
    ctx.setTransform(this.c.width / this.w, 0, 0, this.c.height / this.vh, 40 * this.c.width / this.w, 8 * this.c.height / this.vh);
    // One path per colour; a signed chart leaves zeros out.
    for (const sign of this.signed ? [1, -1] : [1]) {
      ctx.beginPath();
      for (let i = 0; i < k; i++) {
        const v = Math.max(-m, Math.min(m, finite(values[i], m)));
        if (this.signed ? Math.sign(v) !== sign : false) continue;
        const hgt = Math.abs(v) * scale;
        ctx.rect(i * bw + gap / 2, v < 0 ? zero : zero - hgt, w, hgt);
      }
      ctx.fillStyle = sign > 0 ? col.pos : col.neg;
      ctx.fill();
    }
    if (overlay) {
      ctx.beginPath();
      for (let i = 0; i < k; i++) {
        const oh = Math.max(0, Math.min(m, overlay[i])) * scale;
        if (oh <= 0) continue;
        const x = i * bw + gap / 2;
        ctx.moveTo(x, zero); ctx.lineTo(x, zero - oh); ctx.lineTo(x + w, zero - oh); ctx.lineTo(x + w, zero);
      }
      ctx.strokeStyle = col.over; ctx.lineWidth = 2; ctx.stroke();
    }
    ctx.beginPath(); ctx.moveTo(0, zero); ctx.lineTo(W, zero);
    ctx.strokeStyle = col.zero; ctx.lineWidth = 1; ctx.stroke();
    ctx.font = col.font; ctx.fillStyle = col.tick;
    ctx.textAlign = 'end';
    ctx.fillText(fmt(m, 3), -4, 8);
    ctx.fillText(this.signed ? fmt(-m, 3) : '0', -4, H);
    if (k <= 24) {
      ctx.textAlign = 'center';
      for (let i = 0; i < k; i++) ctx.fillText(labels ? labels[i] : String(i), i * bw + bw / 2, H + 16);
    }
  }
  // Calls f(i) when bar i is clicked (the radio buttons are the keyboard way).
  onPick(f) {
    this.c.style.cursor = 'pointer';
    this.c.addEventListener('click', ev => {
      const box = this.c.getBoundingClientRect();
      const x = (ev.clientX - box.left) / box.width * this.w - 40;
      const i = Math.floor(x / ((this.w - 50) / this.k));
      if (i >= 0 && i < this.k) f(i);
    });
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

// Fills a <tbody> with rows of cells, reusing the row elements; a cell is
// written only when its value changed. rows: arrays of values (numbers set
// through setNum, strings as text, {text, cls} objects).
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
        if (c.textContent !== v.text) c.textContent = v.text;
        if (c.className !== (v.cls || '')) c.className = v.cls || '';
      } else if (c.textContent !== String(v)) {
        c.textContent = v;
      }
    }
  }
}

// A long table shows only the rows in view (plus a margin), so an update at
// K = 1000 writes ~40 rows; scrolling draws the others from the same answer.
// The scroll position and the view's height are read only where the browser
// has just laid the page out (scroll event, ResizeObserver): read while an
// answer is drawn, after the DOM writes, they would force a synchronous
// layout of the whole page on every update.
export class VirtualTable {
  constructor(scroller, tbody, rowHeight = 25) {
    this.scroller = scroller; this.tbody = tbody; this.rh = rowHeight;
    this.n = 0; this.rowAt = null;
    this.top = tbody.parentElement.createTBody(); this.top.className = 'spacer';
    tbody.parentElement.insertBefore(this.top, tbody);
    this.topRow = this.top.insertRow().insertCell();
    this.bottom = tbody.parentElement.createTBody(); this.bottom.className = 'spacer';
    this.bottomRow = this.bottom.insertRow().insertCell();
    this.scrollTop = 0; this.viewH = 400; this.pads = '';
    scroller.addEventListener('scroll', () => { this.scrollTop = scroller.scrollTop; this.draw(); });
    new ResizeObserver(() => { this.viewH = scroller.clientHeight || 400; this.draw(); }).observe(scroller);
  }
  // n rows; rowAt(i) gives row i's cells (as fillTable takes them).
  set(n, rowAt) { this.n = n; this.rowAt = rowAt; this.draw(); }
  draw() {
    if (!this.rowAt) return;
    const n = this.n, view = Math.ceil(this.viewH / this.rh);
    // Clamped to n: after K shrinks, the cached scrollTop is stale until
    // the browser's clamped scroll event arrives.
    const first = Math.max(0, Math.min(Math.floor(this.scrollTop / this.rh) - 5, n - view - 5));
    const last = Math.min(n, first + view + 10);
    const pads = `${first * this.rh} ${(n - last) * this.rh}`;
    if (pads !== this.pads) {
      this.pads = pads;
      this.topRow.style.height = `${first * this.rh}px`;
      this.bottomRow.style.height = `${(n - last) * this.rh}px`;
    }
    const rows = [];
    for (let i = first; i < last; i++) rows.push(this.rowAt(i));
    fillTable(this.tbody, rows);
    if (this.tbody.dataset.first !== String(first)) this.tbody.dataset.first = String(first);
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
