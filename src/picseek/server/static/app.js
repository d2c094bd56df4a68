// picseek web page: plain JavaScript, no build step. Talks to the REST API of the same server (docs/api.md).
"use strict";

const $ = (sel) => document.querySelector(sel);
// How the filter controls become `where` filters (the query language's filter syntax).
const WHERE = {
  from: (v) => `taken>=${v}`, to: (v) => `taken<=${v}`, folder: (v) => `folder=${v}`, camera: (v) => `camera~${v}`,
};
const FIELD_OPS = ["=", "~", ">=", "<=", ">", "<", "!="];
const SORTS = { relevance: "by relevance", newest: "newest first", date: "oldest first" };
// Why a hit sits where it is when its score alone does not say so (the hit's `via`, docs/api.md).
const VIA = {
  keyword: ["keyword", "Placed by a keyword match (file name, description or tags), not by its score"],
  "vector+keyword": ["keyword", "Found by both the image match and a keyword match: ranked up by the keyword"],
  tag: ["tag", "Placed by its tags"],
  "tag+keyword": ["tag", "Placed by its tags and a keyword match"],
  rerank: ["re-ranked", "Placed by the re-ranking model"],
};
const MONTHS = new Intl.DateTimeFormat(undefined, { month: "long", year: "numeric", timeZone: "UTC" });

const state = {
  image: null,        // the example image (a File or Blob)
  imageUrl: null,     // its object URL for the preview
  tags: [],           // tag chips
  imageSerial: 0,     // a new example image makes a new view
  hits: [],
  current: -1,        // index of the hit shown in the detail view (-1: one opened from the URL, not in the grid)
  detailHit: null,    // the hit shown in the detail view
  status: null,
  token: sessionStorage.getItem("picseek-token") || "",
  seq: 0,             // the newest request's number: only its answer is drawn
  controller: null,   // aborts the request in flight when a newer one starts
  view: null,         // what the grid shows or is loading: {q, tags, where, sort, threshold, limit, similar, image}
  drawnKey: null,     // the key of the view the grid shows
  next: null,         // browse: the next page's cursor
  month: null,        // browse: the month header last drawn
  paging: false,      // browse: a next page is loading
  needsLoad: false,   // the library was empty: load once images arrive
  loading: false,
  closingForNav: false,
  selected: new Map(), // id -> hit: the tiles picked for an action (cleared when another view is drawn)
  anchor: -1,         // the tile picked last: shift-click picks the range from it
  errorsOffset: 0,    // the errors dialog: the next page's offset
  classifyOne: null,  // the image the detail view's "Classify" chose (a hit), until a file or the selection is used
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

const OFFLINE = "No answer from the picseek server: check that it is still running (picseek serve) and that "
  + "this computer is online, then retry.";

// fetch + JSON. Errors are one clear sentence: the API's own message ({error, code}); a server that cannot be
// reached; an answer that is not the API's JSON (an HTML error page from a proxy). An abort is rethrown as is.
async function api(path, options = {}) {
  let res;
  try {
    res = await fetch(path, { ...options, headers: { Accept: "application/json", ...(options.headers || {}) } });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    const e = new Error(OFFLINE);
    e.code = "offline";
    throw e;
  }
  let body = null;
  const json = (res.headers.get("content-type") || "").includes("json");
  try { body = json ? await res.json() : null; } catch (err) {
    if (err.name === "AbortError") throw err;
    body = null;
  }
  if (!res.ok || !body) {
    const known = body && typeof body.error === "string";
    const err = new Error(known ? body.error : res.status >= 500
      ? `The server had a problem answering (HTTP ${res.status}). Retry in a moment; if it keeps happening, `
        + "the server's log says why."
      : `The server gave an answer this page cannot read (HTTP ${res.status}).`);
    err.status = res.status; err.code = known ? body.code : "http";
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
function fmtScore(s) { return s === null || s === undefined ? "" : Number(s).toFixed(3); }
function altText(hit) {  // what the image shows, as far as the library knows; else its file name
  const f = hit.fields || {};
  const text = f.description || f.title || f.caption;
  if (text) return String(text);
  const tags = (hit.tags || []).map((t) => t.tag || t);
  return tags.length ? `${fileName(hit.path)}: ${tags.join(", ")}` : fileName(hit.path);
}
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
      text += ` · ${what}` + (ix.errors ? ` (${ix.errors} unreadable)` : "");
      bar.hidden = false;
      bar.classList.toggle("indeterminate", !ix.done);
      bar.firstElementChild.style.width = ix.total ? `${(100 * ix.done / ix.total).toFixed(1)}%` : "";
    } else {
      bar.hidden = true;
      if (ix.phase === "failed" && ix.error) text += ` · last index run failed: ${ix.error}`;
    }
    $("#status").textContent = text;
    const errorsLink = $("#errors-open");
    errorsLink.hidden = !s.errors;
    const last = !ix.running && ix.report ? ` (last run: ${ix.report.errors || 0})` : "";
    errorsLink.textContent = `${s.errors.toLocaleString()} unreadable${last}`;
    errorsLink.setAttribute("aria-label", `${s.errors} files could not be indexed${last}: show them`);
    if (!s.images) { if (!state.loading && (state.needsLoad || !state.drawnKey)) showWelcome(); }
    else if (state.needsLoad && !state.loading) { state.needsLoad = false; load(state.view || viewFromControls()); }
  } catch (err) {
    $("#status").textContent = err.code === "offline" ? "Server unreachable: retrying…" : err.message;
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
  const all = n + state.tags.length + ($("#threshold").value.trim() ? 1 : 0) + (state.image ? 1 : 0);
  const fold = $("#fold-count");
  fold.textContent = all; fold.hidden = all === 0;
}

// The view the controls describe. Nothing to search for (no words, image or tags): browse the library.
function viewFromControls(extra = {}) {
  return {
    q: extra.q !== undefined ? extra.q : $("#q").value.trim(),
    tags: [...state.tags], where: whereFilters(), sort: $("#sort").value,
    threshold: $("#threshold").value.trim(), limit: $("#limit").value,
    similar: extra.similar || null, similarName: extra.similarName || null,
    image: extra.similar ? null : state.image,
  };
}

function isBrowse(view) { return !view.q && !view.image && !view.similar; }

// The view as a query string: what a copied URL reproduces and Back/Forward restore (an uploaded image cannot be).
function urlParams(view, openId = null) {
  const p = new URLSearchParams();
  if (view.similar) p.set("similar", view.similar);
  else if (view.q) p.set("q", view.q);
  for (const t of view.tags) p.append("tags", t);
  for (const w of view.where) p.append("where", w);
  if (view.sort !== "relevance") p.set("sort", view.sort);
  if (view.threshold) p.set("threshold", view.threshold);
  if (view.limit !== "50") p.set("limit", view.limit);
  if (openId !== null) p.set("open", openId);
  const text = p.toString();
  return text ? `?${text}` : location.pathname;
}

function viewKey(view) { return urlParams(view) + (view.image ? `#image${state.imageSerial}` : ""); }

function writeUrl(view, push) {
  const url = urlParams(view);
  if (url === urlParams(viewFromUrl())) { if (!push) history.replaceState(null, "", url); return; }
  if (push) history.pushState(null, "", url); else history.replaceState(null, "", url);
}

function viewFromUrl() {
  const p = new URLSearchParams(location.search);
  const similar = /^\d+$/.test(p.get("similar") || "") ? p.get("similar") : null;
  return {
    q: similar ? `id:${similar}` : (p.get("q") || "").trim(), tags: p.getAll("tags"), where: p.getAll("where"),
    sort: SORTS[p.get("sort")] ? p.get("sort") : "relevance", threshold: p.get("threshold") || "",
    limit: /^\d+$/.test(p.get("limit") || "") ? p.get("limit") : "50", similar, similarName: null, image: null,
    open: /^\d+$/.test(p.get("open") || "") ? Number(p.get("open")) : null,
  };
}

// Set the controls to a view (from the URL): the search box, tag chips, sort, score, page size and filters.
function applyToControls(view) {
  $("#q").value = view.q;
  state.tags = [...view.tags];
  renderTagChips();
  $("#sort").value = view.sort;
  $("#threshold").value = view.threshold;
  const limit = $("#limit");
  if (![...limit.options].some((o) => o.value === view.limit)) limit.append(el("option", {}, view.limit));
  limit.value = view.limit;
  for (const k of Object.keys(WHERE)) $(`#f-${k}`).value = "";
  $("#field-filters").replaceChildren();
  for (const w of view.where) {
    const m = /^(taken>=|taken<=|folder=|camera~)(.*)$/.exec(w);
    const key = m && { "taken>=": "from", "taken<=": "to", "folder=": "folder", "camera~": "camera" }[m[1]];
    if (key && !$(`#f-${key}`).value) { $(`#f-${key}`).value = m[2]; continue; }
    const f = /^([^=~<>!]+?)\s*(>=|<=|!=|=|~|>|<)\s*(.*)$/.exec(w);
    if (f) addFieldRow(f[1], f[2], f[3]);
  }
  if (view.where.length) $("#filters").open = true;
  if (view.image === null && state.image) clearImage();
  updateFilterCount();
}

// Search or browse with what the controls say, and write it into the URL (push: a new history entry).
function run({ push = true, ...extra } = {}) {
  const view = viewFromControls(extra);
  writeUrl(view, push);
  return load(view);
}

function describe(view) {
  const words = [view.q, ...view.tags.map(tagTerm)].filter(Boolean).join(" ");
  if (view.similar) return `images like ${view.similarName || `id:${view.similar}`}`;
  return view.image ? [words, "the example image"].filter(Boolean).join(" + ") : words;
}

// What produced the grid, in one line: the query, the filters, the minimum score and the order.
function conditions(view) {
  const parts = [];
  if (view.where.length) parts.push(`filters: ${view.where.join(", ")}`);
  if (isBrowse(view)) {
    if (view.tags.length) parts.push(`tags: ${view.tags.join(", ")}`);
    return parts;
  }
  if (view.threshold) parts.push(`score ≥ ${view.threshold}`);
  if (!view.similar || view.sort !== "relevance") parts.push(`sorted ${SORTS[view.sort]}`);
  return parts;
}

function setLoading(view) {
  state.loading = !!view;
  const grid = $("#results");
  const spinner = $("#loading .spinner");
  if (view) {
    grid.setAttribute("aria-busy", "true");
    grid.classList.add("stale");
    spinner.hidden = false;
    $("#loading-text").textContent = isBrowse(view) ? "Loading your library…" : `Searching for “${describe(view)}”…`;
  } else {
    grid.removeAttribute("aria-busy");
    grid.classList.remove("stale");
    spinner.hidden = true;
    $("#loading-text").textContent = "";
  }
}

// Load a view: one request at a time, each with its sequence number; a newer one aborts the older, and only the
// newest answer is drawn. Returns when it is drawn (or dropped).
async function load(view) {
  const seq = ++state.seq;
  if (state.controller) state.controller.abort();
  const controller = new AbortController();
  state.controller = controller;
  state.view = view;
  state.paging = false;
  setLoading(view);
  try {
    const res = await fetchView(view, null, controller.signal);
    if (seq !== state.seq) return;  // a newer request started meanwhile: its answer is the one to draw
    setLoading(null);
    draw(view, res);
  } catch (err) {
    if (err.name === "AbortError" || seq !== state.seq) return;
    setLoading(null);
    drawError(view, err);
  }
}

// One page of a view: browse (`after`: the cursor), a search or "more like" (`after`: the page token).
function fetchView(view, after, signal) {
  const params = new URLSearchParams();
  params.set("limit", view.limit);
  for (const w of view.where) params.append("where", w);
  if (after) params.set("after", after);
  if (isBrowse(view)) {
    for (const t of view.tags) params.append("tags", t);
    return api(`/api/browse?${params}`, { signal });
  }
  if (view.threshold) params.set("threshold", view.threshold);
  params.set("sort", view.sort);
  if (view.similar) return api(`/api/images/${view.similar}/similar?${params}`, { signal });
  for (const t of view.tags) params.append("tags", t);
  if (view.image) {
    const form = new FormData();
    form.set("text", view.q);
    form.set("image", view.image, view.image.name || "pasted-image");
    for (const [k, v] of params) form.append(k, v);
    return api("/api/search", { method: "POST", body: form, signal });
  }
  params.set("q", view.q);
  return api(`/api/search?${params}`, { signal });
}

function clearGrid() {
  state.hits = []; state.next = null; state.month = null;
  $("#results").replaceChildren();
  $("#more").hidden = true;
  $("#summary").hidden = true;
  $("#select-all").hidden = true;
  clearSelection();
}

function drawError(view, err) {
  clearGrid();
  state.drawnKey = viewKey(view);
  if (err.code === "empty_library" || err.code === "indexing") {
    state.needsLoad = true;
    if (state.status && state.status.images === 0) showWelcome();
    else showMessage("No images yet", [err.message], "empty");
    return;
  }
  const title = err.code === "offline" ? "The server cannot be reached" : isBrowse(view)
    ? "Your library could not be shown" : "That search did not work";
  const retry = el("button", { type: "button", class: "primary retry", onclick: () => load(view) }, "Retry");
  showMessage(title, [err.message], "error", retry);
  $("#message").dataset.code = err.code || "";
}

function summaryLine(view, res) {
  const rest = conditions(view);
  if (isBrowse(view)) {
    const n = state.hits.length;
    return [`All images, newest first: ${n.toLocaleString()}${state.next ? "+" : ""} shown`, ...rest].join(" · ");
  }
  const n = state.hits.length;
  return [`${n} result${n === 1 ? "" : "s"}${state.next ? "+" : ""} for “${describe(view)}”`, ...rest,
    `${Math.round(res.took_ms)} ms`].join(" · ");
}

function draw(view, res) {
  clearGrid();
  state.drawnKey = viewKey(view);
  state.needsLoad = false;
  const summary = $("#summary");
  summary.dataset.q = view.q;
  summary.dataset.sort = view.sort;
  summary.dataset.where = view.where.join("\n");
  if (!res.hits.length) {
    const filtered = view.where.length || view.threshold || view.tags.length;
    if (isBrowse(view)) {
      showMessage("No images match", res.note ? [res.note] : ["Remove a filter or tag to see more."], "nothing");
      return;
    }
    const advice = filtered ? "Try lowering the minimum score or removing filters or tags."
      : "Try other words, or an example image.";
    showMessage(`Nothing found for “${describe(view)}”`, res.note ? [res.note, advice] : [advice], "nothing");
    const line = conditions(view);
    if (line.length) { summary.textContent = `No results for “${describe(view)}” · ${line.join(" · ")}`; summary.hidden = false; }
    return;
  }
  hideMessage();
  state.next = res.next || null;
  appendHits(view, res.hits);
  showMore(view);
  summary.textContent = summaryLine(view, res);
  summary.hidden = false;
  syncDetail();
}

function monthOf(hit) {
  const d = hit.date || hit.taken_at;
  if (!d) return "Undated";
  const date = new Date(`${d.slice(0, 7)}-01T00:00:00Z`);
  return Number.isNaN(date.getTime()) ? "Undated" : MONTHS.format(date);
}

function showMore(view) {
  $("#more").hidden = !state.next;
  $("#more-button").textContent = isBrowse(view) ? "Load more" : "More results";
  $("#select-all").hidden = !state.hits.length;
}

function appendHits(view, hits) {
  const grid = $("#results");
  const nodes = [];
  const shown = new Set(state.hits.map((h) => h.id));
  for (const hit of hits) {
    if (shown.has(hit.id)) continue;  // (a search grown by a page may move a hit across the page boundary)
    if (isBrowse(view)) {
      const month = monthOf(hit);
      if (month !== state.month) {
        state.month = month;
        nodes.push(el("li", { class: "month" }, el("h2", {}, month)));
      }
    }
    nodes.push(tileFor(hit, state.hits.length));
    state.hits.push(hit);
  }
  grid.append(...nodes);
}

// The next page (browse: infinite scroll or "Load more"; a search: "More results"), for the view on screen only.
async function loadMore(event) {
  const view = state.view;
  if (!state.next || state.paging || state.loading || !view) return;
  if (!isBrowse(view) && !(event && event.type === "click")) return;  // a search pages only when asked
  const seq = state.seq;
  state.paging = true;
  const button = $("#more-button");
  button.textContent = "Loading…";
  button.setAttribute("aria-busy", "true");
  try {
    const res = await fetchView(view, state.next, state.controller && state.controller.signal);
    if (seq !== state.seq) return;
    state.next = res.next || null;
    appendHits(view, res.hits);
    showMore(view);
    $("#summary").textContent = summaryLine(view, res);
  } catch (err) {
    if (err.name === "AbortError" || seq !== state.seq) return;
    showMessage("The next page could not be loaded", [err.message], "error",
      el("button", { type: "button", class: "primary retry", onclick: (e) => { hideMessage(); loadMore(e); } },
        "Retry"));
  } finally {
    if (seq === state.seq) {
      state.paging = false;
      button.textContent = isBrowse(view) ? "Load more" : "More results";
      button.removeAttribute("aria-busy");
      // Still in sight (a tall screen, a short page): keep going.
      if (state.next && isBrowse(view) && nearBottom()) setTimeout(loadMore, 0);
    }
  }
}

function nearBottom() {
  const more = $("#more");
  return !more.hidden && more.getBoundingClientRect().top < window.innerHeight + 600;
}

function wirePaging() {
  $("#more-button").addEventListener("click", loadMore);
  if ("IntersectionObserver" in window) {
    new IntersectionObserver((entries) => { if (entries.some((e) => e.isIntersecting)) loadMore(); },
      { rootMargin: "600px 0px" }).observe($("#more"));
  }
}

function tileFor(hit, index) {
  const node = $("#tile").content.firstElementChild.cloneNode(true);
  const button = node.querySelector(".tile");
  const img = node.querySelector("img");
  img.src = hit.thumbnail_url; img.alt = altText(hit);
  node.querySelector(".name").textContent = fileName(hit.path);
  const score = node.querySelector(".score");
  if (hit.score === null || hit.score === undefined) score.remove();
  else score.textContent = fmtScore(hit.score);
  const via = VIA[hit.via];
  if (via) {
    const badge = node.querySelector(".via");
    badge.textContent = via[0]; badge.title = via[1]; badge.hidden = false;
    badge.dataset.via = hit.via;
  }
  const parts = [fileName(hit.path), hit.score !== null && hit.score !== undefined ? `score ${fmtScore(hit.score)}` : null,
    via ? via[1].toLowerCase() : null];
  button.title = parts.filter(Boolean).join(" · ");
  button.dataset.id = hit.id; button.dataset.path = hit.path;
  if (hit.score !== null && hit.score !== undefined) button.dataset.score = hit.score;
  if (hit.via) button.dataset.via = hit.via;
  renderTileTags(button, hit);
  const pick = node.querySelector(".pick");
  pick.setAttribute("aria-label", `Select ${fileName(hit.path)}`);
  pick.dataset.id = hit.id;
  pick.checked = state.selected.has(hit.id);
  node.classList.toggle("picked", pick.checked);
  pick.addEventListener("click", (e) => pickTile(index, pick.checked, e.shiftKey));
  button.addEventListener("click", (e) => {
    if (e.shiftKey || e.ctrlKey || e.metaKey) { e.preventDefault(); pickTile(index, !state.selected.has(hit.id), e.shiftKey); }
    else openDetail(index);
  });
  return node;
}

function renderTileTags(button, hit) {
  const box = button.querySelector(".tile-tags");
  const tags = (hit.tags || []).map((t) => t.tag || t);
  box.replaceChildren(...tags.slice(0, 3).map((t) => el("span", { class: "tile-tag", "data-tag": t }, t)));
  if (tags.length > 3) box.append(el("span", { class: "tile-tag more" }, `+${tags.length - 3}`));
}

// Arrow keys move between tiles, row by row as laid out; Enter opens the detail view (a button click); Space picks
// the tile (Shift+Space: the range from the one picked last).
function gridKeys(event) {
  const tiles = [...document.querySelectorAll("#results .tile")];
  const i = tiles.indexOf(document.activeElement);
  if (i < 0) return;
  if (event.key === " ") {
    event.preventDefault();
    const hit = state.hits[i];
    pickTile(i, !state.selected.has(hit.id), event.shiftKey);
    return;
  }
  const top = tiles[0].getBoundingClientRect().top;
  const perRow = Math.max(1, tiles.filter((t) => t.getBoundingClientRect().top === top).length);
  const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: perRow, ArrowUp: -perRow, Home: -i, End: tiles.length };
  if (!(event.key in moves)) return;
  event.preventDefault();
  const j = Math.min(tiles.length - 1, Math.max(0, i + moves[event.key]));
  tiles[j].focus();
}

// ------------------------------------------------------------------------------------------------ selection

// Pick (or unpick) the grid's hit `index`; with `range`, every hit between it and the one picked last.
function pickTile(index, on, range = false) {
  const from = range && state.anchor >= 0 ? Math.min(state.anchor, index) : index;
  const to = range && state.anchor >= 0 ? Math.max(state.anchor, index) : index;
  for (let i = from; i <= to; i++) {
    const hit = state.hits[i];
    if (!hit) continue;
    if (on) state.selected.set(hit.id, hit); else state.selected.delete(hit.id);
  }
  state.anchor = index;
  syncSelection();
}

function selectAll() {
  for (const hit of state.hits) state.selected.set(hit.id, hit);
  syncSelection();
}

function clearSelection() {
  state.selected.clear();
  state.anchor = -1;
  syncSelection();
}

// The checkboxes, the tiles' look and the selection bar, from state.selected.
function syncSelection() {
  state.classifyOne = null;
  for (const pick of document.querySelectorAll("#results .pick")) {
    const on = state.selected.has(Number(pick.dataset.id));
    pick.checked = on;
    pick.parentElement.classList.toggle("picked", on);
  }
  const n = state.selected.size;
  $("#results").classList.toggle("selecting", n > 0);
  $("#selection").hidden = n === 0;
  document.body.classList.toggle("has-selection", n > 0);
  $("#sel-count").textContent = `${n} selected`;
  const all = state.hits.length && state.hits.every((h) => state.selected.has(h.id));
  $("#select-all").textContent = all ? "Clear the selection" : "Select all results";
  updateClassifyTarget();
}

let toastTimer = null;
function toast(text, kind = "") {
  const box = $("#toast");
  box.textContent = text;
  box.className = `toast ${kind}`.trim();
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { box.hidden = true; }, kind === "error" ? 8000 : 4000);
}

// New tags of some images (the API's {id: tags}): into the hits and their tiles.
function applyTags(byId) {
  for (const [id, tags] of Object.entries(byId)) {
    for (const hit of state.hits) if (hit.id === Number(id)) hit.tags = tags;
    const tile = document.querySelector(`#results .tile[data-id="${Number(id)}"]`);
    const hit = state.hits.find((h) => h.id === Number(id));
    if (tile && hit) { renderTileTags(tile, hit); tile.querySelector("img").alt = altText(hit); }
  }
}

async function bulkTag(op) {
  const input = $("#sel-tag");
  const tag = input.value.trim().toLowerCase().replace(/"/g, "").replace(/\s+/g, " ");
  if (!tag) { input.focus(); toast("Type a tag first.", "error"); return; }
  const ids = [...state.selected.keys()];
  try {
    const res = await writeApi("/api/tags", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ids, [op]: [tag] }) });
    applyTags(res.tags);
    input.value = "";
    toast(op === "add" ? `Tagged ${ids.length} image${ids.length === 1 ? "" : "s"} “${tag}”.`
      : `Removed “${tag}” from ${res.removed} image${res.removed === 1 ? "" : "s"}.`);
  } catch (err) { toast(err.message, "error"); }
}

async function downloadZip() {
  const ids = [...state.selected.keys()];
  const button = $("#sel-zip");
  button.disabled = true; button.textContent = "Preparing…";
  try {
    const res = await fetch("/api/download", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ids }) });
    if (!res.ok) {
      let message = `The download failed (HTTP ${res.status}).`;
      try { message = (await res.json()).error || message; } catch (err) { /* not JSON */ }
      throw new Error(message);
    }
    const blob = await res.blob();
    const url = URL.createObjectURL(blob);
    const a = el("a", { href: url, download: `picseek-${ids.length}-images.zip` });
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    toast(`Downloaded ${ids.length} image${ids.length === 1 ? "" : "s"} as a zip (${fmtBytes(blob.size)}).`);
  } catch (err) {
    toast(err.message === "Failed to fetch" ? OFFLINE : err.message, "error");
  } finally {
    button.disabled = false; button.textContent = "Download zip";
  }
}

async function copyPaths() {
  const text = [...state.selected.values()].map((h) => h.path).join("\n");
  let ok = false;
  try { await navigator.clipboard.writeText(text); ok = true; } catch (err) {
    const area = el("textarea", { class: "offscreen", "aria-hidden": "true" });
    area.value = text; document.body.append(area); area.select();
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    area.remove();
  }
  const n = state.selected.size;
  toast(ok ? `Copied ${n} path${n === 1 ? "" : "s"}.` : "The browser refused the clipboard.", ok ? "" : "error");
  $("#sel-copy").dataset.copied = text;
}

function wireSelection() {
  $("#select-all").addEventListener("click", () => {
    if (state.hits.length && state.hits.every((h) => state.selected.has(h.id))) clearSelection(); else selectAll();
  });
  $("#sel-clear").addEventListener("click", clearSelection);
  $("#sel-add").addEventListener("click", () => bulkTag("add"));
  $("#sel-remove").addEventListener("click", () => bulkTag("remove"));
  $("#sel-tag").addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); bulkTag("add"); } });
  $("#sel-zip").addEventListener("click", downloadZip);
  $("#sel-copy").addEventListener("click", copyPaths);
  $("#sel-classify").addEventListener("click", () => openClassify());
  $("#results").addEventListener("keyup", (e) => { if (e.key === " " && e.target.classList.contains("tile")) e.preventDefault(); });
  document.addEventListener("keydown", (e) => {
    const typing = /^(INPUT|TEXTAREA|SELECT)$/.test(e.target.tagName) && e.target.type !== "checkbox";
    if (typing || document.querySelector("dialog[open]")) return;
    if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "a" && state.hits.length) {
      e.preventDefault(); selectAll();
    } else if (e.key === "Escape" && state.selected.size) {
      clearSelection();
    }
  });
}

// ------------------------------------------------------------------------------------------------ classify

function openClassify() {
  const panel = $("#classify");
  panel.hidden = false;
  $("#classify-open").setAttribute("aria-expanded", "true");
  updateClassifyTarget();
  loadLabelSets($("#labelset").value);
  $("#labels").focus();
}

// Label sets saved in the library (GET/PUT /api/labelsets): choosing one fills the labels box.
async function loadLabelSets(selected = "") {
  let sets = {};
  try { sets = (await api("/api/labelsets")).sets; } catch (err) { return; }  // (the panel works without them)
  const select = $("#labelset");
  select.replaceChildren(el("option", { value: "" }, "(none)"),
    ...Object.keys(sets).sort().map((name) => el("option", { value: name }, `${name}: ${sets[name].join(", ")}`)));
  state.labelSets = sets;
  select.value = selected in sets ? selected : "";
}

async function saveLabelSet() {
  const labels = $("#labels").value.trim();
  const name = (window.prompt("Save these labels as a set named:", $("#labelset").value || "") || "").trim();
  if (!name) return;
  try {
    await writeApi(`/api/labelsets/${encodeURIComponent(name)}`, { method: "PUT",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify({ labels }) });
    await loadLabelSets(name);
    toast(`Saved the label set "${name}".`);
  } catch (err) {
    toast(err.message, "error");
  }
}

function closeClassify() {
  $("#classify").hidden = true;
  $("#classify-open").setAttribute("aria-expanded", "false");
}

// What the panel classifies: the whole library, a chosen file, the image the detail view sent, or the selection.
function classifyTarget() {
  const file = $("#classify-file").files[0];
  if ($("#classify-all").checked) return { all: true, text: "Classifies every image of the library and stores "
    + "the labels as tags." };
  if (file) return { file, text: `Classifies ${file.name}.` };
  if (state.classifyOne) return { ids: [state.classifyOne.id], hits: [state.classifyOne],
    text: `Classifies ${fileName(state.classifyOne.path)}.` };
  const n = state.selected.size;
  if (n) return { ids: [...state.selected.keys()], text: `Classifies the ${n} selected image${n === 1 ? "" : "s"}.` };
  return { text: "Choose an image, or select results." };
}

function updateClassifyTarget() {
  const target = classifyTarget();
  $("#classify-target").textContent = target.text;
  const store = $("#classify-store");
  store.disabled = !target.ids && !target.all;
  if (target.all) store.checked = true;
}

function bars(labels) {
  const list = el("ul", { class: "bars" });
  for (const { label, probability } of labels) {
    const pct = Math.round(probability * 1000) / 10;
    const fill = el("span", { class: "bar-fill" });
    fill.style.width = `${Math.max(pct, 0.5)}%`;
    list.append(el("li", { class: "bar-row", "data-label": label },
      el("span", { class: "bar-label" }, label),
      el("span", { class: "bar", role: "meter", "aria-valuemin": "0", "aria-valuemax": "100",
        "aria-valuenow": String(pct), "aria-label": `${label}: ${pct}%` }, fill),
      el("span", { class: "bar-value" }, `${pct.toFixed(1)}%`)));
  }
  return list;
}

async function classify(event) {
  event.preventDefault();
  const labels = $("#labels").value.trim();
  const { file, ids, all } = classifyTarget();
  const out = $("#classify-result");
  if (!file && !ids && !all) { out.replaceChildren(el("p", { class: "error-text" }, "Choose an image, or select results first.")); return; }
  const store = all || (!file && $("#classify-store").checked);
  try { localStorage.setItem("picseek-labels", labels); } catch (err) { /* storage off: not remembered */ }
  const button = $("#classify-go");
  button.disabled = true;
  out.replaceChildren(el("p", { class: "hint" }, "Classifying…"));
  try {
    let res;
    if (store) {
      res = await writeApi("/api/classify/tags", { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify(all ? { all: true, labels } : { ids, labels }) });
      applyTags(res.tags);
    } else {
      const form = new FormData();
      form.set("labels", labels);
      if (file) form.set("image", file, file.name); else form.set("ids", ids.join(","));
      res = await api("/api/classify", { method: "POST", body: form });
    }
    drawClassified(res, file, store);
  } catch (err) {
    out.replaceChildren(el("p", { class: "error-text" }, err.message));
  } finally { button.disabled = false; }
}

function drawClassified(res, file, stored) {
  const out = $("#classify-result");
  const nodes = [];
  const preds = res.predictions;
  if (res.report) {  // the whole library: how many images each label won
    const r = res.report;
    nodes.push(el("div", { class: "prediction" }, el("div", { class: "prediction-body" },
      el("h3", {}, `The library: ${r.images.toLocaleString()} images, ${r.tags.toLocaleString()} tags stored`),
      bars(Object.entries(r.per_label).sort((a, b) => b[1] - a[1])
        .map(([label, n]) => ({ label, probability: r.images ? n / r.images : 0 }))))));
    out.replaceChildren(...nodes);
    if (state.view) load(state.view);  // the tiles show the new tags
    return;
  }
  if (stored) {
    const tagged = preds.filter((p) => p.labels.length && p.labels[0].probability >= 0.3).length;
    nodes.push(el("p", { class: "hint" }, `Stored as tags: ${tagged} of ${preds.length} images got a label `
      + "(probability 30% or more); tiles show the tags."));
  }
  for (const p of preds.slice(0, 50)) {
    const hit = state.hits.find((h) => h.id === p.id);
    const src = file ? URL.createObjectURL(file) : hit ? hit.thumbnail_url : `/api/images/${p.id}/thumbnail`;
    const name = file ? file.name : fileName(p.path);
    nodes.push(el("div", { class: "prediction", "data-id": p.id === null ? "" : p.id },
      el("img", { src, alt: name }),
      el("div", { class: "prediction-body" }, el("h3", {}, name),
        bars(preds.length > 1 ? p.labels.slice(0, 3) : p.labels))));
  }
  if (preds.length > 50) nodes.push(el("p", { class: "hint" }, `and ${preds.length - 50} more`));
  out.replaceChildren(...nodes);
}

function wireClassify() {
  try { $("#labels").value = localStorage.getItem("picseek-labels") || ""; } catch (err) { /* storage off */ }
  $("#classify-open").addEventListener("click", () => ($("#classify").hidden ? openClassify() : closeClassify()));
  $("#classify-close").addEventListener("click", closeClassify);
  $("#labelset-save").addEventListener("click", saveLabelSet);
  $("#labelset").addEventListener("change", () => {
    const sets = state.labelSets || {};
    if (sets[$("#labelset").value]) $("#labels").value = sets[$("#labelset").value].join(", ");
  });
  $("#classify-form").addEventListener("submit", classify);
  $("#classify-file").addEventListener("change", () => { state.classifyOne = null; updateClassifyTarget(); });
  $("#classify-all").addEventListener("change", updateClassifyTarget);
  $("#detail-classify").addEventListener("click", () => {
    state.classifyOne = state.detailHit;
    $("#classify-file").value = "";
    $("#detail").close();
    openClassify();
  });
}

// ------------------------------------------------------------------------------------------------ index errors

async function showErrors(more = false) {
  const dialog = $("#errors");
  if (!more) { state.errorsOffset = 0; $("#errors-list").replaceChildren(); }
  try {
    const res = await api(`/api/errors?limit=100&offset=${state.errorsOffset}`);
    $("#errors-summary").textContent = `${res.total.toLocaleString()} file${res.total === 1 ? "" : "s"} could not `
      + "be read; they are skipped until they change (picseek index --retry-errors tries them again).";
    $("#errors-list").append(...res.errors.map((r) => el("li", {}, el("code", {}, r.path),
      el("span", { class: "reason" }, r.reason || ""))));
    state.errorsOffset = res.next || 0;
    $("#errors-more").hidden = res.next === null;
  } catch (err) {
    $("#errors-summary").textContent = err.message;
  }
  if (!dialog.open) dialog.showModal();
}

function wireErrors() {
  $("#errors-open").addEventListener("click", () => showErrors());
  $("#errors-more").addEventListener("click", () => showErrors(true));
  $("#errors-close").addEventListener("click", () => $("#errors").close());
}

// ------------------------------------------------------------------------------------------------ image

function setImage(file) {
  if (!file || !file.type.startsWith("image/")) {
    showMessage("Not an image", ["Drop, paste or choose a JPEG, PNG, WebP or GIF image."], "error");
    return;
  }
  if (state.imageUrl) URL.revokeObjectURL(state.imageUrl);
  state.image = file;
  state.imageSerial += 1;
  state.imageUrl = URL.createObjectURL(file);
  const fig = $("#query-image");
  fig.querySelector("img").src = state.imageUrl;
  fig.hidden = false;
  $("#dropzone .drop-empty").hidden = true;
  updateFilterCount();
  run();
}

function clearImage(event) {
  if (event) event.stopPropagation();
  if (state.imageUrl) URL.revokeObjectURL(state.imageUrl);
  state.image = state.imageUrl = null;
  $("#query-image").hidden = true;
  $("#dropzone .drop-empty").hidden = false;
  $("#file").value = "";
  updateFilterCount();
  if (event) run();  // (a person cleared it: the grid follows what is left, words or the library itself)
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

function renderTagChips() {
  renderChips($("#tag-chips"), state.tags, (t) => {
    state.tags = state.tags.filter((x) => x !== t); renderTagChips(); updateFilterCount(); run();
  });
}

function wireTagChips() {
  const input = $("#tag-input");
  input.addEventListener("keydown", (e) => {
    if (e.key !== "Enter" && e.key !== ",") return;
    e.preventDefault();
    const t = input.value.trim().toLowerCase().replace(/^tag:/, "").replace(/"/g, "").replace(/\s+/g, " ");
    if (t && !state.tags.includes(t)) { state.tags.push(t); renderTagChips(); updateFilterCount(); run(); }
    input.value = "";
  });
}

// ------------------------------------------------------------------------------------------------ detail

// The detail view of the grid's hit `index`; its id goes into the URL (Back closes it, a copied URL reopens it).
function openDetail(index, { push = true } = {}) {
  const hit = state.hits[index];
  if (!hit) return;
  showDetail(hit, index, push);
}

async function showDetail(hit, index, push) {
  state.current = index;
  state.detailHit = hit;
  const dialog = $("#detail");
  const img = $("#detail-img");
  img.src = `${hit.thumbnail_url}?size=640`;
  img.alt = altText(hit);
  const full = new Image();
  full.onload = () => { if (state.detailHit === hit) img.src = full.src; };
  full.src = hit.image_url;
  $("#detail-title").textContent = fileName(hit.path);
  renderOcr(hit.ocr);
  const where = index >= 0 ? `result ${index + 1} of ${state.hits.length}` : "";
  const via = VIA[hit.via] ? VIA[hit.via][1].toLowerCase() : "";
  $("#detail-score").textContent = [hit.score !== null && hit.score !== undefined ? `score ${fmtScore(hit.score)}` : "",
    where, via].filter(Boolean).join(" · ");
  $("#original").href = hit.image_url;
  $("#prev").disabled = index <= 0;
  $("#next").disabled = index < 0 || index === state.hits.length - 1;
  const url = urlParams(state.view || viewFromControls(), hit.id);
  const already = new URLSearchParams(location.search).get("open") !== null;
  if (push && !already) history.pushState({ detail: true }, "", url);
  else history.replaceState(already ? history.state : null, "", url);
  if (!dialog.open) dialog.showModal();
  try {
    const meta = await api(`/api/images/${hit.id}/metadata`);
    if (state.detailHit === hit) renderMeta(meta);
  } catch (err) {
    if (state.detailHit === hit) $("#detail-fields").replaceChildren(el("dt", {}, "error"), el("dd", {}, err.message));
  }
}

// Open or close the detail view as the URL says (after Back/Forward, or a copied URL once its view is drawn).
async function syncDetail() {
  const id = viewFromUrl().open;
  const dialog = $("#detail");
  if (id === null) { if (dialog.open) { state.closingForNav = true; dialog.close(); } return; }
  if (dialog.open && state.detailHit && state.detailHit.id === id) return;
  const index = state.hits.findIndex((h) => h.id === id);
  if (index >= 0) { showDetail(state.hits[index], index, false); return; }
  try {  // not in the grid: the image on its own
    const meta = await api(`/api/images/${id}/metadata`);
    if (viewFromUrl().open === id) showDetail({ ...meta, score: null, via: null }, -1, false);
  } catch (err) {
    history.replaceState(null, "", urlParams(state.view || viewFromUrl()));
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
  if (state.detailHit && state.detailHit.ocr === undefined && meta.ocr !== undefined) renderOcr(meta.ocr);
}

// The text read in the image (`ocr`: null, or {text, lines: [{text, box, score, matched}]}, each box four corners as
// fractions of the oriented image): the lines as text beside the image, the matched ones marked, and their boxes
// drawn over the image in those fractions (an SVG stretched over the image, so they fit any size it is shown at).
const SVG_NS = "http://www.w3.org/2000/svg";

function renderOcr(ocr) {
  const section = $("#detail-ocr");
  const boxes = $("#detail-boxes");
  const list = $("#detail-ocr-lines");
  boxes.replaceChildren();
  list.replaceChildren();
  const lines = ocr && Array.isArray(ocr.lines) ? ocr.lines
    : ocr && ocr.text ? ocr.text.split("\n").map((text) => ({ text, box: null, matched: false })) : [];
  section.hidden = !lines.length;
  if (!lines.length) return;
  let matched = 0;
  for (const line of lines) {
    const p = el("p", { class: "ocr-line" });
    if (line.matched) {
      matched += 1;
      p.append(el("mark", {}, line.text));
      const points = validBox(line.box);
      if (points) {
        const shape = document.createElementNS(SVG_NS, "polygon");
        shape.setAttribute("points", points.map(([x, y]) => `${x},${y}`).join(" "));
        shape.setAttribute("class", "text-box");
        boxes.append(shape);
      }
    } else {
      p.textContent = line.text;
    }
    list.append(p);
  }
  $("#detail-ocr-note").textContent = matched
    ? `${matched} of ${lines.length} ${lines.length === 1 ? "line matches" : "lines match"} the search (outlined in the image)`
    : `${lines.length} ${lines.length === 1 ? "line" : "lines"}`;
}

// Four [x, y] corners, each a fraction of the image (0..1), or null.
function validBox(box) {
  if (!Array.isArray(box) || box.length !== 4) return null;
  const ok = box.every((c) => Array.isArray(c) && c.length === 2
    && c.every((v) => typeof v === "number" && Number.isFinite(v) && v >= 0 && v <= 1));
  return ok ? box : null;
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
    const byNav = state.closingForNav;
    state.closingForNav = false;
    state.detailHit = null;
    renderOcr(null);
    if (!byNav && new URLSearchParams(location.search).get("open") !== null) {
      if (history.state && history.state.detail) history.back();
      else history.replaceState(null, "", urlParams(state.view || viewFromUrl()));
    }
    const tile = state.current >= 0 && document.querySelectorAll("#results .tile")[state.current];
    if (tile) tile.focus();
  });
  $("#prev").addEventListener("click", () => openDetail(state.current - 1));
  $("#next").addEventListener("click", () => openDetail(state.current + 1));
  dialog.addEventListener("keydown", (e) => {
    if (e.target.tagName === "INPUT") return;
    if (e.key === "ArrowLeft" && state.current > 0) openDetail(state.current - 1);
    if (e.key === "ArrowRight" && state.current >= 0 && state.current < state.hits.length - 1) {
      openDetail(state.current + 1);
    }
  });
  $("#similar").addEventListener("click", () => {
    const hit = state.detailHit;
    // Leave the detail's history entry as the plain view, then push the new view after it.
    history.replaceState(null, "", urlParams(state.view || viewFromControls()));
    state.closingForNav = true;
    dialog.close();
    clearImage();
    $("#q").value = `id:${hit.id}`;
    run({ q: `id:${hit.id}`, similar: String(hit.id), similarName: fileName(hit.path) });
  });
  const input = $("#detail-tag-input");
  input.addEventListener("keydown", async (e) => {
    if (e.key !== "Enter") return;
    e.preventDefault();
    const hit = state.detailHit;
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
      onclick: () => { row.remove(); updateFilterCount(); run(); } }, "remove"));
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
    run();
  });
  $("#filters").addEventListener("input", updateFilterCount);
  $("#filters").addEventListener("change", () => run());
  for (const id of ["#sort", "#limit", "#threshold"]) {
    $(id).addEventListener("change", () => { updateFilterCount(); run(); });
  }
}

// ------------------------------------------------------------------------------------------------ start

// Back/Forward: the view the URL names (drawn again only when it is another view), and its detail view.
function onPopState() {
  const view = viewFromUrl();
  applyToControls(view);
  const current = viewFromControls({ q: view.q, similar: view.similar, similarName: view.similar
    && state.view && state.view.similar === view.similar ? state.view.similarName : null });
  if (viewKey(current) === state.drawnKey && !state.loading) syncDetail();
  else load(current);
}

// Phones: the image, tags, filters and sort fold behind one button, so results start near the top.
function wireFold() {
  const toggle = $("#fold-toggle");
  toggle.addEventListener("click", () => {
    const open = !$("#search-form").classList.contains("open");
    $("#search-form").classList.toggle("open", open);
    toggle.setAttribute("aria-expanded", String(open));
  });
}

document.addEventListener("DOMContentLoaded", () => {
  $("#search-form").addEventListener("submit", (e) => { e.preventDefault(); run(); });
  $("#results").addEventListener("keydown", gridKeys);
  wireImageInput();
  wireTagChips();
  wireDetail();
  wireFilters();
  wirePaging();
  wireFold();
  wireSelection();
  wireClassify();
  wireErrors();
  window.addEventListener("popstate", onPopState);
  refreshStatus();
  const view = viewFromUrl();
  applyToControls(view);
  load(viewFromControls({ q: view.q, similar: view.similar }));
  if (!view.q) $("#q").focus();
});
