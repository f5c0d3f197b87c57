// unetkit review, the mask editor: the state, the view (zoom, pan, overlay and image tiles) and the edits.
// page.js, loaded after it, builds the page around it. Plain JavaScript on a canvas, no build step.
//
// The mask is a Uint8Array of class indices (one byte a pixel), edited exactly: brush and eraser set
// the pixels whose centres lie within the radius of the stroke, so what is saved is what was drawn,
// never an antialiased canvas. Every edit records the pixels it changed and their values before,
// which is what undo and redo replay.
//
// A frame must cost the view, not the image. The overlay is kept in tiles of TILE x TILE pixels, and
// an edit repaints only the rectangle it touched within them. An image longer than OVERVIEW_SIDE
// has a level: a factor 2^k that brings it under that side. Zoomed out past the level, the page
// draws a reduced copy of the image (asked of the server once) and a reduced overlay (one pixel per
// k x k block, repainted by the same rectangles); zoomed in, it draws the full-resolution image
// tiles in view, fetched when they first come into view, over the reduced copy.
"use strict";

const TILE = 512;
const OVERVIEW_SIDE = 2048;
const token = document.body.dataset.token;
const $ = (id) => document.getElementById(id);
const api = (path) => `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}`;
const itemUrl = (id, what) => api(`/api/items/${encodeURIComponent(id)}/${what}`);

const state = {
  info: null, items: [], index: -1, id: null,
  image: null, reduced: null, level: 1, W: 0, H: 0, labels: null, prediction: null,
  tiles: [], tilesX: 0, tilesY: 0, overview: null, colours: null,
  undo: [], redo: [], dirty: false, opened: 0,
  tool: "brush", cls: 1, size: 12, opacity: 0.5, overlay: true,
  scale: 1, ox: 0, oy: 0, polygon: [], cursor: null,
  stroke: null, panning: null, spaceDown: false, queued: false,
};

const canvas = $("view");
const ctx = canvas.getContext("2d");

// ---------- tiles: the overlay's (full and reduced) and the image's ----------

// The reduction factor for an image W x H: the smallest power of two that brings it within OVERVIEW_SIDE.
function levelFor(W, H) {
  let f = 1;
  while (Math.max(W, H) / f > OVERVIEW_SIDE) f *= 2;
  return f;
}

const union = (r, x0, y0, x1, y1) => (r ? [Math.min(r[0], x0), Math.min(r[1], y0), Math.max(r[2], x1), Math.max(r[3], y1)]
  : [x0, y0, x1, y1]);

// Called by open() once state.W, H, level, labels and the info's colours are set.
function makeTiles() {
  state.tilesX = Math.ceil(state.W / TILE); state.tilesY = Math.ceil(state.H / TILE);
  state.tiles = [];
  for (let ty = 0; ty < state.tilesY; ty++) {
    for (let tx = 0; tx < state.tilesX; tx++) {
      const x = tx * TILE, y = ty * TILE, w = Math.min(TILE, state.W - x), h = Math.min(TILE, state.H - y);
      const full = [x, y, x + w - 1, y + h - 1];
      state.tiles.push({ x, y, w, h, canvas: null, dirty: full, odirty: full, picture: null, loading: false });
    }
  }
  // ImageData is RGBA in memory: one little-endian 32-bit word per pixel, transparent for the background
  state.colours = Uint32Array.from(state.info.classes, (k, i) => (i === 0 ? 0
    : ((255 << 24) | (k.color[2] << 16) | (k.color[1] << 8) | k.color[0]) >>> 0));
  state.overview = null;
  if (state.level > 1) {
    state.overview = document.createElement("canvas");
    state.overview.width = Math.ceil(state.W / state.level); state.overview.height = Math.ceil(state.H / state.level);
  }
}

// Image pixels x0..x1, y0..y1 (inclusive) changed: their tiles repaint that rectangle when next drawn.
function markDirty(x0, y0, x1, y1) {
  x0 = Math.max(0, x0); y0 = Math.max(0, y0); x1 = Math.min(state.W - 1, x1); y1 = Math.min(state.H - 1, y1);
  if (x1 < x0 || y1 < y0) return;
  for (let ty = Math.floor(y0 / TILE); ty <= Math.floor(y1 / TILE); ty++) {
    for (let tx = Math.floor(x0 / TILE); tx <= Math.floor(x1 / TILE); tx++) {
      const t = state.tiles[ty * state.tilesX + tx];
      const a = Math.max(x0, t.x), b = Math.max(y0, t.y), c = Math.min(x1, t.x + t.w - 1), d = Math.min(y1, t.y + t.h - 1);
      t.dirty = union(t.dirty, a, b, c, d);
      if (state.level > 1) t.odirty = union(t.odirty, a, b, c, d);
    }
  }
}

// Paint image pixels x0..x1, y0..y1 into c2d, one output pixel per f x f block (the block's highest
// class: a thin stroke stays visible zoomed out); the canvas's pixel (0, 0) is block (bx, by).
function renderRegion(c2d, f, bx, by, x0, y0, x1, y1) {
  const { W, H, labels, colours } = state;
  const u0 = Math.floor(x0 / f), v0 = Math.floor(y0 / f), u1 = Math.floor(x1 / f), v1 = Math.floor(y1 / f);
  const w = u1 - u0 + 1, h = v1 - v0 + 1;
  const data = c2d.createImageData(w, h), out = new Uint32Array(data.data.buffer);
  const top = colours.length - 1;
  for (let v = 0; v < h; v++) {
    const ya = (v0 + v) * f, yb = Math.min(H, ya + f);
    for (let u = 0; u < w; u++) {
      const xa = (u0 + u) * f, xb = Math.min(W, xa + f);
      let m = 0;
      for (let y = ya; y < yb; y++) {
        for (let i = y * W + xa, end = y * W + xb; i < end; i++) if (labels[i] > m) m = labels[i];
      }
      out[v * w + u] = colours[Math.min(m, top)];
    }
  }
  c2d.putImageData(data, u0 - bx, v0 - by);
}

function tileCanvas(tile) {
  if (!tile.canvas) {
    tile.canvas = document.createElement("canvas");
    tile.canvas.width = tile.w; tile.canvas.height = tile.h;
    tile.dirty = [tile.x, tile.y, tile.x + tile.w - 1, tile.y + tile.h - 1];
  }
  if (tile.dirty) {
    const [x0, y0, x1, y1] = tile.dirty;
    renderRegion(tile.canvas.getContext("2d"), 1, tile.x, tile.y, x0, y0, x1, y1);
    tile.dirty = null;
  }
  return tile.canvas;
}

function overviewCanvas() {
  const c2d = state.overview.getContext("2d");
  for (const tile of state.tiles) {
    if (!tile.odirty) continue;
    const [x0, y0, x1, y1] = tile.odirty;
    renderRegion(c2d, state.level, 0, 0, x0, y0, x1, y1);
    tile.odirty = null;
  }
  return state.overview;
}

// The full-resolution picture under a tile (large images only), asked of the server when first in view.
function tilePicture(tile) {
  if (tile.picture || tile.loading) return tile.picture;
  tile.loading = true;
  const id = state.id;
  fetch(`${itemUrl(id, "image")}&region=${tile.x},${tile.y},${tile.w},${tile.h}`)
    .then((r) => (r.ok ? r.blob() : Promise.reject(new Error(String(r.status)))))
    .then((blob) => createImageBitmap(blob))
    .then((bitmap) => { if (state.id === id) { tile.picture = bitmap; draw(); } })
    .catch(() => {});  // stays loading: the reduced copy keeps standing in for it
  return null;
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

// The tiles in view: [tx0, ty0, tx1, ty1], inclusive.
function tilesInView(x0, y0, x1, y1) {
  return [Math.max(0, Math.floor(x0 / TILE)), Math.max(0, Math.floor(y0 / TILE)),
    Math.min(state.tilesX - 1, Math.floor(x1 / TILE)), Math.min(state.tilesY - 1, Math.floor(y1 / TILE))];
}

function paint() {
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!state.labels) return;
  ctx.setTransform(state.scale, 0, 0, state.scale, state.ox, state.oy);
  ctx.imageSmoothingEnabled = state.scale < 1;
  const x0 = -state.ox / state.scale, y0 = -state.oy / state.scale;
  const x1 = x0 + canvas.width / state.scale, y1 = y0 + canvas.height / state.scale;
  const f = state.level, coarse = f > 1 && state.scale * f <= 1;
  const [tx0, ty0, tx1, ty1] = tilesInView(x0, y0, x1, y1);
  if (f === 1) {  // only the visible part of the image is drawn
    const sx = Math.max(0, Math.floor(x0)), sy = Math.max(0, Math.floor(y0));
    const sw = Math.min(state.W, Math.ceil(x1)) - sx, sh = Math.min(state.H, Math.ceil(y1)) - sy;
    if (sw > 0 && sh > 0 && state.image) ctx.drawImage(state.image, sx, sy, sw, sh, sx, sy, sw, sh);
  } else if (state.reduced) {
    ctx.drawImage(state.reduced, 0, 0, state.reduced.width * f, state.reduced.height * f);
  }
  if (f > 1 && !coarse) {
    for (let ty = ty0; ty <= ty1; ty++) {
      for (let tx = tx0; tx <= tx1; tx++) {
        const tile = state.tiles[ty * state.tilesX + tx], picture = tilePicture(tile);
        if (picture) ctx.drawImage(picture, tile.x, tile.y);
      }
    }
  }
  if (state.overlay) {
    ctx.globalAlpha = state.opacity;
    if (coarse) {
      ctx.drawImage(overviewCanvas(), 0, 0, state.overview.width * f, state.overview.height * f);
    } else {
      for (let ty = ty0; ty <= ty1; ty++) {
        for (let tx = tx0; tx <= tx1; tx++) {
          const tile = state.tiles[ty * state.tilesX + tx];
          ctx.drawImage(tileCanvas(tile), tile.x, tile.y);
        }
      }
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
  markDirty(edit.x0, edit.y0, edit.x1, edit.y1);
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
  markDirty(edit.x0, edit.y0, edit.x1, edit.y1);
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
