// picseek web page: plain JavaScript, no build step. Talks to the REST API of the same server (docs/api.md).
"use strict";

const $ = (sel) => document.querySelector(sel);
// How the filter controls become `where` filters (the query language's filter syntax).
const WHERE = {
  from: (v) => `taken>=${v}`, to: (v) => `taken<=${v}`, folder: (v) => `folder=${v}`, camera: (v) => `camera~${v}`,
};
const FIELD_OPS = ["=", "~", ">=", "<=", ">", "<", "!="];

const state = {
  image: null,        // the example image (a File or Blob)
  imageUrl: null,     // its object URL for the preview
  tags: [],           // tag chips
  hits: [],
  current: -1,        // index of the hit shown in the detail view
  status: null,
  token: sessionStorage.getItem("picseek-token") || "",
  searched: false,
};

// ------------------------------------------------------------------------------------------------ helpers

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

async function api(path, options = {}) {
  const res = await fetch(path, { headers: { Accept: "application/json", ...(options.headers || {}) }, ...options });
  let body = null;
  try { body = await res.json(); } catch (_) { body = null; }
  if (!res.ok) {
    const err = new Error((body && body.error) || `request failed (${res.status})`);
    err.status = res.status; err.code = body && body.code;
    throw err;
  }
  return body;
}

async function writeApi(path, options) {
  const send = () => api(path, { ...options, headers: { ...(options.headers || {}),
    ...(state.token ? { Authorization: `Bearer ${state.token}` } : {}) } });
  try {
    return await send();
  } catch (err) {
    if (err.status !== 401) throw err;
    const token = window.prompt("This server needs its token (PICSEEK_TOKEN) for changes:");
    if (!token) throw err;
    state.token = token; sessionStorage.setItem("picseek-token", token);
    return send();
  }
}

function tagTerm(tag) { return /\s/.test(tag) ? `tag:"${tag}"` : `tag:${tag}`; }
function fileName(path) { return path.split("/").pop(); }  // (API paths use /; a backslash is part of a name)
function fmtScore(s) { return Number(s).toFixed(3); }
function fmtBytes(n) { return n > 1e6 ? `${(n / 1e6).toFixed(1)} MB` : `${Math.max(1, Math.round(n / 1e3))} kB`; }

// ------------------------------------------------------------------------------------------------ status

async function refreshStatus() {
  let delay = 10000;
  try {
    const s = await api("/api/status");
    state.status = s;
    const ix = s.indexing;
    const model = s.model ? ` · ${s.model}` : "";
    let text = `${s.images.toLocaleString()} image${s.images === 1 ? "" : "s"}${model}`;
    const bar = $("#progress");
    if (ix.running) {
      delay = 1000;
      const what = ix.phase === "scan" ? "scanning folders…" :
        `indexing ${ix.done.toLocaleString()} / ${ix.total.toLocaleString()}`;
      text += ` · ${what}`;
      bar.hidden = false;
      bar.classList.toggle("indeterminate", !ix.done);
      bar.firstElementChild.style.width = ix.total ? `${(100 * ix.done / ix.total).toFixed(1)}%` : "";
    } else {
      bar.hidden = true;
      if (ix.phase === "failed" && ix.error) text += ` · last index run failed: ${ix.error}`;
    }
    if (s.errors) text += ` · ${s.errors} unreadable`;
    $("#status").textContent = text;
    if (!state.searched) showWelcome();
  } catch (err) {
    $("#status").textContent = `server unreachable (${err.message})`;
  }
  setTimeout(refreshStatus, delay);
}

function showMessage(title, lines = [], kind = "", action = null) {
  const box = $("#message");
  box.replaceChildren(el("h2", {}, title), ...lines.map((l) => el("p", {}, l)));
  if (action) box.append(action);
  box.className = `message ${kind}`.trim();
  box.dataset.kind = kind || "info";
  box.hidden = false;
}

function hideMessage() { $("#message").hidden = true; }

function showWelcome() {
  const s = state.status;
  if (!s) return;
  if (s.indexing.running && s.images === 0) {
    const ix = s.indexing;
    const bar = el("progress", { max: Math.max(ix.total, 1), value: ix.done, "aria-label": "indexing progress" });
    showMessage("Indexing your images…", [ix.total ? `${ix.done.toLocaleString()} of ${ix.total.toLocaleString()}`
      + " images done; results appear as soon as the first ones are in." : "Looking for images in "
      + `${ix.folders.join(", ")}…`], "indexing", bar);
  } else if (s.images === 0) {
    const folders = s.indexing.folders;
    const action = folders.length ? el("button", { class: "primary", type: "button", onclick: startIndex },
      "Index now") : null;
    showMessage("No images yet", folders.length ? [`Index ${folders.join(", ")} to start searching.`] :
      ["Start the server with a folder to index: picseek serve ~/Pictures"], "empty", action);
  } else {
    showMessage("Search your images", ["Type what you are looking for, or drop an example image."], "welcome");
  }
}

async function startIndex() {
  try {
    await writeApi("/api/index", { method: "POST" });
    refreshStatus();
  } catch (err) {
    showMessage("Could not start indexing", [err.message], "error");
  }
}

// ------------------------------------------------------------------------------------------------ query

function whereFilters() {
  const out = [];
  for (const [key, make] of Object.entries(WHERE)) {
    const v = $(`#f-${key}`).value.trim();
    if (v) out.push(make(v));
  }
  for (const row of document.querySelectorAll(".field-row")) {
    const k = row.querySelector(".f-key").value.trim();
    const v = row.querySelector(".f-value").value.trim();
    if (k && v) out.push(`${k}${row.querySelector(".f-op").value}${v}`);
  }
  return out;
}

function updateFilterCount() {
  const n = whereFilters().length;
  const badge = $("#filter-count");
  badge.textContent = n; badge.hidden = n === 0;
}

async function search(extra = {}) {
  const text = extra.text !== undefined ? extra.text : $("#q").value.trim();
  const image = extra.noImage ? null : state.image;
  if (!text && !image && !state.tags.length) { $("#q").focus(); return; }
  state.searched = true;
  const params = new URLSearchParams();
  params.set("limit", $("#limit").value);
  params.set("sort", $("#sort").value);
  const threshold = $("#threshold").value.trim();
  if (threshold) params.set("threshold", threshold);
  for (const w of whereFilters()) params.append("where", w);
  if (!extra.similar) for (const t of state.tags) params.append("tags", t);
  const words = [text, ...state.tags.map(tagTerm)].filter(Boolean).join(" ");
  let label = image ? [words, "the example image"].filter(Boolean).join(" + ") : words;
  $("#go").disabled = true;
  $("#results").setAttribute("aria-busy", "true");
  try {
    let res;
    if (extra.similar) {
      params.delete("sort");
      res = await api(`/api/images/${extra.similar.id}/similar?${params}`);
      label = `images like ${fileName(extra.similar.path)}`;
    } else if (image) {
      const form = new FormData();
      form.set("text", text);
      form.set("image", image, image.name || "pasted-image");
      for (const [k, v] of params) form.append(k, v);
      res = await api("/api/search", { method: "POST", body: form });
    } else {
      params.set("q", text);
      res = await api(`/api/search?${params}`);
    }
    showHits(res, label);
    history.replaceState(null, "", text && !image ? `?q=${encodeURIComponent(text)}` : location.pathname);
  } catch (err) {
    showHits(null);
    if (err.code === "empty_library" || err.code === "indexing") { state.searched = false; showWelcome(); }
    else showMessage("That search did not work", [err.message], "error");
  } finally {
    $("#go").disabled = false;
    $("#results").removeAttribute("aria-busy");
  }
}

function showHits(res, label = "") {
  const grid = $("#results");
  state.hits = res ? res.hits : [];
  grid.replaceChildren(...state.hits.map(tileFor));
  const summary = $("#summary");
  if (!res) { summary.hidden = true; return; }
  if (!state.hits.length) {
    summary.hidden = true;
    const filtered = whereFilters().length || $("#threshold").value || state.tags.length;
    const advice = filtered ? "Try lowering the minimum score or removing filters or tags."
      : "Try other words, or an example image.";
    showMessage(`Nothing found for “${label}”`, res.note ? [res.note, advice] : [advice], "nothing");
    return;
  }
  hideMessage();
  summary.textContent = `${res.count} result${res.count === 1 ? "" : "s"} for “${label}” · ${Math.round(res.took_ms)} ms`;
  summary.hidden = false;
}

function tileFor(hit, index) {
  const node = $("#tile").content.firstElementChild.cloneNode(true);
  const button = node.querySelector(".tile");
  const img = node.querySelector("img");
  img.src = hit.thumbnail_url; img.alt = fileName(hit.path);
  node.querySelector(".name").textContent = fileName(hit.path);
  node.querySelector(".score").textContent = fmtScore(hit.score);
  button.title = `${fileName(hit.path)} · score ${fmtScore(hit.score)}`;
  button.dataset.id = hit.id; button.dataset.path = hit.path; button.dataset.score = hit.score;
  button.addEventListener("click", () => openDetail(index));
  return node;
}

// Arrow keys move between tiles, row by row as laid out; Enter opens the detail view (a button click).
function gridKeys(event) {
  const tiles = [...document.querySelectorAll("#results .tile")];
  const i = tiles.indexOf(document.activeElement);
  if (i < 0) return;
  const top = tiles[0].getBoundingClientRect().top;
  const perRow = Math.max(1, tiles.filter((t) => t.getBoundingClientRect().top === top).length);
  const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: perRow, ArrowUp: -perRow, Home: -i, End: tiles.length };
  if (!(event.key in moves)) return;
  event.preventDefault();
  const j = Math.min(tiles.length - 1, Math.max(0, i + moves[event.key]));
  tiles[j].focus();
}

// ------------------------------------------------------------------------------------------------ image

function setImage(file) {
  if (!file || !file.type.startsWith("image/")) {
    showMessage("Not an image", ["Drop, paste or choose a JPEG, PNG, WebP or GIF image."], "error");
    return;
  }
  if (state.imageUrl) URL.revokeObjectURL(state.imageUrl);
  state.image = file;
  state.imageUrl = URL.createObjectURL(file);
  const fig = $("#query-image");
  fig.querySelector("img").src = state.imageUrl;
  fig.hidden = false;
  $("#dropzone .drop-empty").hidden = true;
  search();
}

function clearImage(event) {
  if (event) event.stopPropagation();
  if (state.imageUrl) URL.revokeObjectURL(state.imageUrl);
  state.image = state.imageUrl = null;
  $("#query-image").hidden = true;
  $("#dropzone .drop-empty").hidden = false;
  $("#file").value = "";
}

function wireImageInput() {
  const zone = $("#dropzone");
  zone.addEventListener("click", () => $("#file").click());
  zone.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("#file").click(); } });
  $("#file").addEventListener("change", (e) => setImage(e.target.files[0]));
  $("#clear-image").addEventListener("click", clearImage);
  for (const type of ["dragenter", "dragover"]) {
    document.addEventListener(type, (e) => { e.preventDefault(); zone.classList.add("over"); });
  }
  for (const type of ["dragleave", "dragend"]) {
    document.addEventListener(type, (e) => { if (!e.relatedTarget) zone.classList.remove("over"); });
  }
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    const file = e.dataTransfer && e.dataTransfer.files[0];
    if (file) setImage(file);
  });
  document.addEventListener("paste", (e) => {
    const item = [...(e.clipboardData ? e.clipboardData.items : [])].find((it) => it.type.startsWith("image/"));
    if (item) { e.preventDefault(); setImage(item.getAsFile()); }
  });
}

// ------------------------------------------------------------------------------------------------ tags

function renderChips(box, tags, onRemove) {
  box.querySelectorAll(".chip").forEach((c) => c.remove());
  const input = box.querySelector(".chip-input");
  for (const tag of tags) {
    const name = typeof tag === "string" ? tag : tag.tag;
    const chip = el("span", { class: "chip", "data-tag": name }, name,
      el("button", { type: "button", "aria-label": `Remove tag ${name}`, onclick: () => onRemove(name) }, "×"));
    box.insertBefore(chip, input);
  }
}

function wireTagChips() {
  const input = $("#tag-input");
  const rerender = () => renderChips($("#tag-chips"), state.tags, (t) => {
    state.tags = state.tags.filter((x) => x !== t); rerender(); search();
  });
  input.addEventListener("keydown", (e) => {
    if (e.key !== "Enter" && e.key !== ",") return;
    e.preventDefault();
    const t = input.value.trim().toLowerCase().replace(/^tag:/, "").replace(/"/g, "").replace(/\s+/g, " ");
    if (t && !state.tags.includes(t)) { state.tags.push(t); rerender(); search(); }
    input.value = "";
  });
}

// ------------------------------------------------------------------------------------------------ detail

async function openDetail(index) {
  const hit = state.hits[index];
  if (!hit) return;
  state.current = index;
  const dialog = $("#detail");
  const img = $("#detail-img");
  img.src = `${hit.thumbnail_url}?size=640`;
  img.alt = fileName(hit.path);
  const full = new Image();
  full.onload = () => { if (state.current === index) img.src = full.src; };
  full.src = hit.image_url;
  $("#detail-title").textContent = fileName(hit.path);
  $("#detail-score").textContent = `score ${fmtScore(hit.score)} · result ${index + 1} of ${state.hits.length}`;
  $("#original").href = hit.image_url;
  $("#prev").disabled = index === 0;
  $("#next").disabled = index === state.hits.length - 1;
  if (!dialog.open) dialog.showModal();
  try {
    const meta = await api(`/api/images/${hit.id}/metadata`);
    if (state.current === index) renderMeta(meta);
  } catch (err) {
    $("#detail-fields").replaceChildren(el("dt", {}, "error"), el("dd", {}, err.message));
  }
}

function renderMeta(meta) {
  const rows = [["path", meta.path], ["size", meta.width && meta.height ? `${meta.width} × ${meta.height} px` : null],
    ["format", meta.format], ["file", meta.size ? fmtBytes(meta.size) : null], ["taken", meta.taken_at],
    ["camera", [meta.camera_make, meta.camera_model].filter(Boolean).join(" ") || null], ["lens", meta.lens],
    ["location", meta.gps_lat != null ? `${meta.gps_lat.toFixed(5)}, ${meta.gps_lon.toFixed(5)}` : null]];
  const fields = meta.fields || {};
  const first = ["description", "title", "photographer", "url"];
  const keys = [...first.filter((k) => k in fields), ...Object.keys(fields).filter((k) => !first.includes(k)).sort()];
  for (const k of keys) rows.push([k.replace(/_/g, " "), fields[k]]);
  const dl = $("#detail-fields");
  dl.replaceChildren();
  for (const [k, v] of rows) if (v !== null && v !== undefined && v !== "") dl.append(el("dt", {}, k), el("dd", {}, v));
  renderDetailTags(meta.id, meta.tags || []);
}

function renderDetailTags(id, tags) {
  renderChips($("#detail-tags"), tags, async (t) => {
    try {
      const res = await writeApi(`/api/images/${id}/tags/${encodeURIComponent(t)}`, { method: "DELETE" });
      renderDetailTags(id, res.tags);
    } catch (err) { window.alert(err.message); }
  });
}

function wireDetail() {
  const dialog = $("#detail");
  $("#close").addEventListener("click", () => dialog.close());
  dialog.addEventListener("click", (e) => { if (e.target === dialog) dialog.close(); });
  dialog.addEventListener("close", () => {
    const tile = document.querySelectorAll("#results .tile")[state.current];
    if (tile) tile.focus();
  });
  $("#prev").addEventListener("click", () => openDetail(state.current - 1));
  $("#next").addEventListener("click", () => openDetail(state.current + 1));
  dialog.addEventListener("keydown", (e) => {
    if (e.target.tagName === "INPUT") return;
    if (e.key === "ArrowLeft" && state.current > 0) openDetail(state.current - 1);
    if (e.key === "ArrowRight" && state.current < state.hits.length - 1) openDetail(state.current + 1);
  });
  $("#similar").addEventListener("click", () => {
    const hit = state.hits[state.current];
    dialog.close();
    clearImage();
    $("#q").value = `id:${hit.id}`;
    search({ text: `id:${hit.id}`, noImage: true, similar: hit });
  });
  const input = $("#detail-tag-input");
  input.addEventListener("keydown", async (e) => {
    if (e.key !== "Enter") return;
    e.preventDefault();
    const hit = state.hits[state.current];
    const tag = input.value.trim();
    if (!tag) return;
    try {
      const res = await writeApi(`/api/images/${hit.id}/tags`, { method: "POST",
        headers: { "Content-Type": "application/json" }, body: JSON.stringify({ tags: [tag] }) });
      input.value = "";
      renderDetailTags(hit.id, res.tags);
    } catch (err) { window.alert(err.message); }
  });
}

// ------------------------------------------------------------------------------------------------ filters

function addFieldRow(key = "", op = "=", value = "") {
  const select = el("select", { class: "f-op", "aria-label": "comparison" });
  for (const o of FIELD_OPS) select.append(el("option", { value: o }, o));
  select.value = op;
  const row = el("div", { class: "field-row" },
    el("input", { class: "f-key", placeholder: "field (e.g. photographer)", "aria-label": "field" }), select,
    el("input", { class: "f-value", placeholder: "value", "aria-label": "value" }),
    el("button", { type: "button", class: "link", "aria-label": "Remove this filter",
      onclick: () => { row.remove(); updateFilterCount(); } }, "remove"));
  row.querySelector(".f-key").value = key;
  row.querySelector(".f-value").value = value;
  $("#field-filters").append(row);
}

function wireFilters() {
  $("#add-field").addEventListener("click", () => addFieldRow());
  $("#clear-filters").addEventListener("click", () => {
    for (const k of Object.keys(WHERE)) $(`#f-${k}`).value = "";
    $("#field-filters").replaceChildren();
    updateFilterCount();
    if (state.searched) search();
  });
  $("#filters").addEventListener("input", updateFilterCount);
  $("#filters").addEventListener("change", () => { if (state.searched) search(); });
  for (const id of ["#sort", "#limit", "#threshold"]) {
    $(id).addEventListener("change", () => { if (state.searched) search(); });
  }
}

// ------------------------------------------------------------------------------------------------ start

document.addEventListener("DOMContentLoaded", () => {
  $("#search-form").addEventListener("submit", (e) => { e.preventDefault(); search(); });
  $("#results").addEventListener("keydown", gridKeys);
  wireImageInput();
  wireTagChips();
  wireDetail();
  wireFilters();
  refreshStatus();
  const q = new URLSearchParams(location.search).get("q");
  if (q) { $("#q").value = q; search(); }
  else $("#q").focus();
});
