// unetkit review, the page around the editor (editor.js, loaded first, holds the state, the view
// and the edits): the ranked list, loading an image and its mask, saving, the tools and the keys,
// and "train on corrections". Plain JavaScript, no build step, nothing fetched but this server's API.
"use strict";

// ---------- loading ----------

async function fetchOk(url, options) {
  const response = await fetch(url, options);
  if (!response.ok) throw new Error(`${response.status} ${(await response.text()).trim()}`);
  return response;
}

async function decodeLabels(blob, binary) {
  const bitmap = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  const scratch = document.createElement("canvas");
  scratch.width = bitmap.width; scratch.height = bitmap.height;
  const c = scratch.getContext("2d", { willReadFrequently: true });
  c.drawImage(bitmap, 0, 0);
  const rgba = c.getImageData(0, 0, bitmap.width, bitmap.height).data;
  const out = new Uint8Array(bitmap.width * bitmap.height);
  for (let i = 0; i < out.length; i++) out[i] = binary ? (rgba[4 * i] > 0 ? 1 : 0) : rgba[4 * i];
  return out;
}

async function loadList(keepId) {
  state.items = await (await fetchOk(api("/api/items"))).json();
  const list = $("items");
  list.textContent = "";
  state.items.forEach((item, i) => {
    const li = document.createElement("li");
    li.dataset.id = item.id;
    li.dataset.score = item.score;
    if (item.reviewed) li.classList.add("reviewed");
    const img = document.createElement("img");
    img.loading = "lazy"; img.alt = ""; img.src = itemUrl(item.id, "thumbnail");
    const text = document.createElement("div");
    const name = document.createElement("div"); name.className = "name"; name.textContent = item.id;
    const figures = document.createElement("div"); figures.className = "figures";
    figures.textContent = `doubt ${(100 * item.score).toFixed(1)}%` + (item.iou === null ? "" : ` · IoU ${item.iou.toFixed(3)}`);
    text.append(name, figures);
    li.append(img, text);
    li.addEventListener("click", () => open(i));
    list.append(li);
  });
  const reviewed = state.items.filter((item) => item.reviewed).length;
  $("summary").textContent = `${state.items.length} images, ${reviewed} reviewed · most doubtful first`;
  if (keepId !== undefined) state.index = state.items.findIndex((item) => item.id === keepId);
  markCurrent();
}

function markCurrent() {
  document.querySelectorAll("#items li").forEach((li, i) => li.classList.toggle("current", i === state.index));
  const li = document.querySelectorAll("#items li")[state.index];
  if (li) li.scrollIntoView({ block: "nearest" });
}

async function open(index) {
  if (index < 0 || index >= state.items.length) return;
  if (state.dirty && !confirm("This mask has unsaved changes. Leave it?")) return;
  const item = state.items[index], id = item.id;
  state.index = index; state.id = id;
  markCurrent();
  setStatus(`loading ${id}…`);
  const binary = state.info.num_classes === 1;
  const level = levelFor(item.width, item.height);  // a large image comes reduced; its tiles follow as zoomed into
  const picture = level > 1 ? `${itemUrl(id, "image")}&reduce=${level}` : itemUrl(id, "image");
  const [imageBlob, predictionBlob] = await Promise.all([
    fetchOk(picture).then((r) => r.blob()), fetchOk(itemUrl(id, "prediction")).then((r) => r.blob())]);
  const maskResponse = await fetch(itemUrl(id, "mask"));
  const bitmap = await createImageBitmap(imageBlob);
  const prediction = await decodeLabels(predictionBlob, binary);
  const labels = maskResponse.ok ? await decodeLabels(await maskResponse.blob(), binary) : prediction.slice();
  // the new image's state is set at once, after the last await: a frame never sees half of it
  state.W = item.width; state.H = item.height; state.level = level;
  state.image = level > 1 ? null : bitmap; state.reduced = level > 1 ? bitmap : null;
  state.prediction = prediction; state.labels = labels;
  state.source = maskResponse.ok ? "saved or given mask" : "prediction";
  state.undo = []; state.redo = []; state.dirty = false; state.polygon = [];
  state.opened = performance.now();
  makeTiles();
  fit();
  setStatus();
}

// ---------- saving ----------

async function save() {
  const scratch = document.createElement("canvas");
  scratch.width = state.W; scratch.height = state.H;
  const c = scratch.getContext("2d");
  const data = c.createImageData(state.W, state.H);
  const binary = state.info.num_classes === 1;
  for (let i = 0; i < state.labels.length; i++) {
    const v = binary ? (state.labels[i] ? 255 : 0) : state.labels[i];
    data.data[4 * i] = v; data.data[4 * i + 1] = v; data.data[4 * i + 2] = v; data.data[4 * i + 3] = 255;
  }
  c.putImageData(data, 0, 0);
  const blob = await new Promise((resolve) => scratch.toBlob(resolve, "image/png"));
  const seconds = ((performance.now() - state.opened) / 1000).toFixed(2);
  const response = await fetch(itemUrl(state.id, "mask"), { method: "PUT", body: blob,
    headers: { "Content-Type": "image/png", "X-Seconds-Spent": seconds } });
  const text = await response.text();
  if (!response.ok) { setStatus(`not saved: ${text.trim()}`); return false; }
  state.dirty = false;
  state.items[state.index].reviewed = true;
  document.querySelectorAll("#items li")[state.index].classList.add("reviewed");
  document.body.dataset.saved = String(Number(document.body.dataset.saved || 0) + 1);
  setStatus(`saved ${JSON.parse(text).path}`);
  return true;
}

async function accept() {
  if (await save()) await open(Math.min(state.index + 1, state.items.length - 1));
}

// ---------- status, tools, input ----------

function setStatus(message) {
  if (message) { $("status").textContent = message; return; }
  const item = state.items[state.index];
  if (!item) return;
  $("status").textContent = `${item.id} · ${state.W}×${state.H} · doubt ${(100 * item.score).toFixed(1)}%`
    + (item.iou === null ? "" : ` · IoU vs given mask ${item.iou.toFixed(3)}`) + ` · from ${state.source}`
    + ` · ${state.dirty ? "unsaved changes" : "no unsaved changes"} · zoom ${(100 * state.scale).toFixed(0)}%`;
  $("undo").disabled = !state.undo.length; $("redo").disabled = !state.redo.length;
}

function setTool(tool) {
  state.tool = tool; state.polygon = [];
  document.querySelectorAll("[data-tool]").forEach((b) => b.classList.toggle("active", b.dataset.tool === tool));
  canvas.style.cursor = tool === "pan" ? "grab" : "crosshair";
  draw();
}

function setSize(size) {
  state.size = Math.max(1, Math.min(200, Math.round(size)));
  $("size").value = state.size; $("size-value").textContent = state.size;
  draw();
}

function closePolygon() {
  if (state.polygon.length >= 3) fillPolygon(state.polygon, state.cls);
  state.polygon = []; draw();
}

canvas.addEventListener("contextmenu", (e) => e.preventDefault());
canvas.addEventListener("mousedown", (e) => {
  if (!state.labels) return;
  const p = toImage(e);
  if (e.button !== 0 || state.tool === "pan" || state.spaceDown) {
    state.panning = { x: e.clientX, y: e.clientY, ox: state.ox, oy: state.oy }; return;
  }
  if (state.tool === "brush" || state.tool === "eraser") {
    state.stroke = { edit: beginEdit(), last: p, value: state.tool === "eraser" ? 0 : state.cls };
    paintSegment(state.stroke.edit, p, p, state.size / 2, state.stroke.value);
    draw();
  } else if (state.tool === "polygon") {
    state.polygon.push(p); draw();
  } else if (state.tool === "component") {
    const x = Math.floor(p.x), y = Math.floor(p.y);
    if (x >= 0 && y >= 0 && x < state.W && y < state.H) removeComponent(x, y);
  }
});
window.addEventListener("mousemove", (e) => {
  if (!state.labels) return;
  if (state.panning) {
    state.ox = state.panning.ox + e.clientX - state.panning.x; state.oy = state.panning.oy + e.clientY - state.panning.y;
    draw(); return;
  }
  const p = toImage(e);
  state.cursor = p;
  if (state.stroke) {
    paintSegment(state.stroke.edit, state.stroke.last, p, state.size / 2, state.stroke.value);
    state.stroke.last = p;
  }
  draw();
});
window.addEventListener("mouseup", () => {
  state.panning = null;
  if (state.stroke) { commit(state.stroke.edit); state.stroke = null; }
});
canvas.addEventListener("dblclick", () => { if (state.tool === "polygon") closePolygon(); });
canvas.addEventListener("wheel", (e) => {
  e.preventDefault();
  const box = canvas.getBoundingClientRect(), mx = e.clientX - box.left, my = e.clientY - box.top;
  const factor = Math.exp(-e.deltaY * 0.0015), scale = Math.max(0.02, Math.min(64, state.scale * factor));
  state.ox = mx - ((mx - state.ox) * scale) / state.scale; state.oy = my - ((my - state.oy) * scale) / state.scale;
  state.scale = scale; draw(); setStatus();
}, { passive: false });

window.addEventListener("keydown", (e) => {
  if (e.target.tagName === "INPUT" || e.target.tagName === "SELECT") return;
  const key = e.key.toLowerCase(), mod = e.ctrlKey || e.metaKey;
  if (mod && key === "z") { e.preventDefault(); e.shiftKey ? redo() : undo(); return; }
  if (mod && key === "y") { e.preventDefault(); redo(); return; }
  if (mod && key === "s") { e.preventDefault(); save(); return; }
  if (mod) return;
  const tools = { b: "brush", e: "eraser", p: "polygon", r: "component", h: "pan" };
  if (tools[key]) setTool(tools[key]);
  else if (key === " ") { state.spaceDown = true; e.preventDefault(); }
  else if (key === "[") setSize(state.size * 0.8);
  else if (key === "]") setSize(state.size * 1.25 + 1);
  else if (key === "f") fit();
  else if (key === "o") { state.overlay = !state.overlay; draw(); }
  else if (key === "escape") { state.polygon = []; draw(); }
  else if (key === "enter") { e.preventDefault(); state.tool === "polygon" && state.polygon.length ? closePolygon() : accept(); }
  else if (key === "arrowright") open(state.index + 1);
  else if (key === "arrowleft") open(state.index - 1);
  else if (/^[0-9]$/.test(key) && Number(key) < state.info.classes.length) { state.cls = Number(key); $("class").value = key; }
});
window.addEventListener("keyup", (e) => { if (e.key === " ") state.spaceDown = false; });
window.addEventListener("resize", fit);
window.addEventListener("beforeunload", (e) => { if (state.dirty) e.preventDefault(); });

document.querySelectorAll("[data-tool]").forEach((b) => b.addEventListener("click", () => setTool(b.dataset.tool)));
$("size").addEventListener("input", (e) => setSize(Number(e.target.value)));
$("opacity").addEventListener("input", (e) => { state.opacity = Number(e.target.value) / 100; draw(); });
$("class").addEventListener("change", (e) => { state.cls = Number(e.target.value); });
$("undo").addEventListener("click", undo);
$("redo").addEventListener("click", redo);
$("fit").addEventListener("click", fit);
$("from-prediction").addEventListener("click", resetToPrediction);
$("prev").addEventListener("click", () => open(state.index - 1));
$("next").addEventListener("click", () => open(state.index + 1));
$("accept").addEventListener("click", accept);

// ---------- train on corrections ----------

async function pollTraining() {
  const job = await (await fetchOk(api("/api/train"))).json();
  showTraining(job);
  if (job.status === "training" || job.status === "ranking") setTimeout(pollTraining, 1000);
  else if (job.status === "done") await loadList(state.id);
}

function showTraining(job) {
  const running = job.status === "training" || job.status === "ranking";
  $("train").disabled = running;
  $("train-progress").hidden = !running && job.status !== "done";
  $("train-progress").value = job.progress || 0;
  $("train-status").textContent = job.message || "";
  document.body.dataset.training = job.status;
}

$("train").addEventListener("click", async () => {
  const job = await (await fetchOk(api("/api/train"), { method: "POST" })).json();
  showTraining(job);
  if (job.status === "training") setTimeout(pollTraining, 1000);
});

// ---------- start ----------

async function start() {
  state.info = await (await fetchOk(api("/api/info"))).json();
  $("score-help").textContent = `doubt = ${state.info.score}`;
  const select = $("class");
  state.info.classes.forEach((k, i) => {
    if (i === 0) return;
    const option = document.createElement("option");
    option.value = i; option.textContent = `${i} ${k.name}`; option.style.color = `rgb(${k.color.join(",")})`;
    select.append(option);
  });
  setTool("brush"); setSize(state.size);
  await loadList();
  const first = state.items.findIndex((item) => !item.reviewed);
  await open(first >= 0 ? first : 0);
  pollTraining();
  document.body.dataset.ready = "1";
}

window.unetkitReview = { state, toImage, fit, paint };  // read by tests and benchmarks: the view, the mask, a frame's work
start().catch((error) => setStatus(`error: ${error.message}`));
