// unetkit review, the mask editor: the state, the view (zoom, pan, overlay tiles) and the edits.
// page.js, loaded after it, builds the page around it. Plain JavaScript on a canvas, no build step.
//
// The mask is a Uint8Array of class indices (one byte a pixel), edited exactly: brush and eraser set
// the pixels whose centres lie within the radius of the stroke, so what is saved is what was drawn,
// never an antialiased canvas. The overlay is drawn from tiles of TILE x TILE pixels, and an edit
// repaints only the tiles it touched: an edit costs its own area, not the image's. Every edit records the
// pixels it changed and their values before, which is what undo and redo replay.
"use strict";

const TILE = 512;
const token = document.body.dataset.token;
const $ = (id) => document.getElementById(id);
const api = (path) => `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}`;
const itemUrl = (id, what) => api(`/api/items/${encodeURIComponent(id)}/${what}`);

const state = {
  info: null, items: [], index: -1, id: null,
  image: null, W: 0, H: 0, labels: null, prediction: null,
  tiles: [], tilesX: 0, tilesY: 0,
  undo: [], redo: [], dirty: false, opened: 0,
  tool: "brush", cls: 1, size: 12, opacity: 0.5, overlay: true,
  scale: 1, ox: 0, oy: 0, polygon: [], cursor: null,
  stroke: null, panning: null, spaceDown: false, queued: false,
};

const canvas = $("view");
const ctx = canvas.getContext("2d");

// ---------- overlay tiles ----------

function makeTiles() {
  state.tilesX = Math.ceil(state.W / TILE); state.tilesY = Math.ceil(state.H / TILE);
  state.tiles = [];
  for (let ty = 0; ty < state.tilesY; ty++) {
    for (let tx = 0; tx < state.tilesX; tx++) {
      const c = document.createElement("canvas");
      c.width = Math.min(TILE, state.W - tx * TILE); c.height = Math.min(TILE, state.H - ty * TILE);
      state.tiles.push({ canvas: c, tx, ty, dirty: true });
    }
  }
}

function markDirty(x0, y0, x1, y1) {
  for (let ty = Math.max(0, Math.floor(y0 / TILE)); ty <= Math.min(state.tilesY - 1, Math.floor(y1 / TILE)); ty++) {
    for (let tx = Math.max(0, Math.floor(x0 / TILE)); tx <= Math.min(state.tilesX - 1, Math.floor(x1 / TILE)); tx++) {
      state.tiles[ty * state.tilesX + tx].dirty = true;
    }
  }
}

function renderTile(tile) {
  const { canvas: c, tx, ty } = tile;
  const c2 = c.getContext("2d");
  const data = c2.createImageData(c.width, c.height);
  const colours = state.info.classes.map((k) => k.color);
  for (let y = 0; y < c.height; y++) {
    let src = (ty * TILE + y) * state.W + tx * TILE;
    let dst = y * c.width * 4;
    for (let x = 0; x < c.width; x++, src++, dst += 4) {
      const v = state.labels[src];
      if (v === 0) continue;
      const rgb = colours[Math.min(v, colours.length - 1)];
      data.data[dst] = rgb[0]; data.data[dst + 1] = rgb[1]; data.data[dst + 2] = rgb[2]; data.data[dst + 3] = 255;
    }
  }
  c2.putImageData(data, 0, 0);
  tile.dirty = false;
}

// ---------- view ----------

function resizeCanvas() {
  const box = $("stage").getBoundingClientRect();
  canvas.width = Math.max(1, Math.round(box.width)); canvas.height = Math.max(1, Math.round(box.height));
}

function fit() {
  resizeCanvas();
  if (!state.W) return;
  state.scale = Math.min(canvas.width / state.W, canvas.height / state.H) * 0.96;
  state.ox = (canvas.width - state.W * state.scale) / 2; state.oy = (canvas.height - state.H * state.scale) / 2;
  draw();
}

function toImage(event) {
  const box = canvas.getBoundingClientRect();
  return { x: (event.clientX - box.left - state.ox) / state.scale, y: (event.clientY - box.top - state.oy) / state.scale };
}

function draw() {
  if (state.queued) return;
  state.queued = true;
  requestAnimationFrame(() => { state.queued = false; paint(); });
}

function paint() {
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!state.image) return;
  ctx.setTransform(state.scale, 0, 0, state.scale, state.ox, state.oy);
  ctx.imageSmoothingEnabled = state.scale < 1;
  const x0 = -state.ox / state.scale, y0 = -state.oy / state.scale;
  const x1 = x0 + canvas.width / state.scale, y1 = y0 + canvas.height / state.scale;
  // only the visible part of the image is drawn: zoomed into a large image, a frame costs the view, not the image
  const sx = Math.max(0, Math.floor(x0)), sy = Math.max(0, Math.floor(y0));
  const sw = Math.min(state.W, Math.ceil(x1)) - sx, sh = Math.min(state.H, Math.ceil(y1)) - sy;
  if (sw > 0 && sh > 0) ctx.drawImage(state.image, sx, sy, sw, sh, sx, sy, sw, sh);
  if (state.overlay) {
    ctx.globalAlpha = state.opacity;
    for (const tile of state.tiles) {
      const left = tile.tx * TILE, top = tile.ty * TILE;
      if (left > x1 || top > y1 || left + tile.canvas.width < x0 || top + tile.canvas.height < y0) continue;
      if (tile.dirty) renderTile(tile);
      ctx.drawImage(tile.canvas, left, top);
    }
    ctx.globalAlpha = 1;
  }
  ctx.lineWidth = 1.5 / state.scale;
  if (state.polygon.length) {
    ctx.strokeStyle = "#ffd400";
    ctx.beginPath();
    state.polygon.forEach((p, i) => (i ? ctx.lineTo(p.x, p.y) : ctx.moveTo(p.x, p.y)));
    if (state.cursor) ctx.lineTo(state.cursor.x, state.cursor.y);
    ctx.stroke();
  }
  if (state.cursor && (state.tool === "brush" || state.tool === "eraser")) {
    ctx.strokeStyle = state.tool === "eraser" ? "#ffffff" : "#ffd400";
    ctx.beginPath();
    ctx.arc(state.cursor.x, state.cursor.y, state.size / 2, 0, 2 * Math.PI);
    ctx.stroke();
  }
}

// ---------- edits (each records changed pixels for undo) ----------

function beginEdit() { return { idx: [], before: [], after: 0, x0: Infinity, y0: Infinity, x1: -1, y1: -1 }; }

function setPixel(edit, x, y, value) {
  const i = y * state.W + x;
  const old = state.labels[i];
  if (old === value) return;
  edit.idx.push(i); edit.before.push(old);
  state.labels[i] = value;
  if (x < edit.x0) edit.x0 = x; if (y < edit.y0) edit.y0 = y; if (x > edit.x1) edit.x1 = x; if (y > edit.y1) edit.y1 = y;
}

// Pixels whose centres lie within r of the segment a-b (a capsule): exact, no antialiasing.
function paintSegment(edit, a, b, r, value) {
  const x0 = Math.max(0, Math.floor(Math.min(a.x, b.x) - r)), x1 = Math.min(state.W - 1, Math.ceil(Math.max(a.x, b.x) + r));
  const y0 = Math.max(0, Math.floor(Math.min(a.y, b.y) - r)), y1 = Math.min(state.H - 1, Math.ceil(Math.max(a.y, b.y) + r));
  const dx = b.x - a.x, dy = b.y - a.y, len2 = dx * dx + dy * dy, r2 = r * r;
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      const px = x + 0.5 - a.x, py = y + 0.5 - a.y;
      const t = len2 ? Math.max(0, Math.min(1, (px * dx + py * dy) / len2)) : 0;
      const ex = px - t * dx, ey = py - t * dy;
      if (ex * ex + ey * ey <= r2) setPixel(edit, x, y, value);
    }
  }
  markDirty(x0, y0, x1, y1);
}

function fillPolygon(points, value) {
  const edit = beginEdit();
  const ys = points.map((p) => p.y);
  const y0 = Math.max(0, Math.floor(Math.min(...ys))), y1 = Math.min(state.H - 1, Math.ceil(Math.max(...ys)));
  for (let y = y0; y <= y1; y++) {
    const cy = y + 0.5, xs = [];
    for (let i = 0; i < points.length; i++) {
      const p = points[i], q = points[(i + 1) % points.length];
      if ((p.y <= cy) !== (q.y <= cy)) xs.push(p.x + ((cy - p.y) / (q.y - p.y)) * (q.x - p.x));
    }
    xs.sort((u, v) => u - v);
    for (let k = 0; k + 1 < xs.length; k += 2) {
      const from = Math.max(0, Math.ceil(xs[k] - 0.5)), to = Math.min(state.W - 1, Math.floor(xs[k + 1] - 0.5));
      for (let x = from; x <= to; x++) setPixel(edit, x, y, value);
    }
  }
  markDirty(0, y0, state.W - 1, y1);
  commit(edit);
}

function removeComponent(x, y) {
  const start = y * state.W + x, value = state.labels[start];
  if (value === 0) return;
  const edit = beginEdit();
  const stack = [start];
  const seen = new Uint8Array(state.W * state.H);
  seen[start] = 1;
  while (stack.length) {
    const i = stack.pop(), px = i % state.W, py = (i - px) / state.W;
    setPixel(edit, px, py, 0);
    for (const [nx, ny] of [[px - 1, py], [px + 1, py], [px, py - 1], [px, py + 1]]) {
      if (nx < 0 || ny < 0 || nx >= state.W || ny >= state.H) continue;
      const j = ny * state.W + nx;
      if (!seen[j] && state.labels[j] === value) { seen[j] = 1; stack.push(j); }
    }
  }
  markDirty(edit.x0, edit.y0, edit.x1, edit.y1);
  commit(edit);
}

function resetToPrediction() {
  const edit = beginEdit();
  for (let i = 0; i < state.labels.length; i++) {
    if (state.labels[i] !== state.prediction[i]) setPixel(edit, i % state.W, Math.floor(i / state.W), state.prediction[i]);
  }
  markDirty(0, 0, state.W - 1, state.H - 1);
  commit(edit);
}

function commit(edit) {
  if (!edit.idx.length) return;
  edit.idx = Uint32Array.from(edit.idx); edit.before = Uint8Array.from(edit.before);
  edit.after = Uint8Array.from(edit.idx, (i) => state.labels[i]);
  state.undo.push(edit); state.redo = [];
  state.dirty = true;
  draw(); setStatus();
}

function replay(from, to, values) {
  const edit = from.pop();
  if (!edit) return;
  const v = edit[values];
  for (let k = 0; k < edit.idx.length; k++) state.labels[edit.idx[k]] = v[k];
  markDirty(edit.x0, edit.y0, edit.x1, edit.y1);
  to.push(edit);
  state.dirty = true;
  draw(); setStatus();
}
const undo = () => replay(state.undo, state.redo, "before");
const redo = () => replay(state.redo, state.undo, "after");
