// Render farm dashboard, shared part: the token, HTTP with it, polling, and small DOM/format helpers.
// Data only ever reaches the DOM through textContent and attributes, never parsed as markup.

const TOKEN_KEY = "farm-token";
export const POLL_MS = 1500;
export const THUMBS = 8;
export const COLORS = {
  p: "#4a505c",
  r: "#e3b341",
  d: "#3fb950",
  f: "#f85149",
  c: "#6e7681",
  "?": "#2b2f38",
};
export const BATCH_COLORS = {
  running: COLORS.r,
  done: COLORS.d,
  completed: COLORS.d,
  failed: COLORS.f,
  cancelled: COLORS.c,
  queued: COLORS.p,
};
export const STATE_NAMES = { p: "pending", r: "rendering", d: "done", f: "failed", c: "cancelled" };

// ---------------------------------------------------------------- token and HTTP

// The token arrives once as ?token=..., lives in sessionStorage (this tab), leaves the URL.
export function captureToken() {
  const url = new URL(window.location.href);
  if (!url.searchParams.has("token")) return;
  const token = url.searchParams.get("token");
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  url.searchParams.delete("token");
  window.history.replaceState(null, "", url.pathname + url.search + url.hash);
}

function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

export class HttpError extends Error {
  constructor(status, detail) {
    super(detail ? `${status}: ${detail}` : `HTTP ${status}`);
    this.status = status;
    this.detail = detail;
  }
}

async function request(path, options = {}) {
  const response = await fetch(path, {
    cache: "no-store",
    ...options,
    headers: { ...authHeaders(), ...(options.headers || {}) },
  });
  if (response.status === 401 || response.status === 403) {
    showTokenForm(response.status === 403);
  }
  if (!response.ok) {
    let detail = response.statusText;
    try {
      const body = await response.json();
      detail = body.detail || body.error || detail;
    } catch {
      // not JSON: keep the status text
    }
    throw new HttpError(response.status, String(detail));
  }
  return response;
}

export async function api(path, options = {}) {
  const response = await request(path, {
    ...options,
    headers: { Accept: "application/json", ...(options.headers || {}) },
  });
  return response.status === 204 ? null : response.json();
}

// <img> and <video> cannot send headers: fetch the bytes with the token, show an object URL.
export async function blobUrl(path) {
  const response = await request(path);
  return URL.createObjectURL(await response.blob());
}

function showTokenForm(wrong) {
  const form = document.getElementById("token-form");
  if (!form.hidden) return;
  document.getElementById("token-label").textContent = wrong
    ? "That token was refused. Enter the farm's token (FARM_TOKEN)."
    : "This farm needs its access token (FARM_TOKEN).";
  form.hidden = false;
  document.getElementById("token-input").focus();
}

export function setupToken(onChange) {
  const form = document.getElementById("token-form");
  const clear = document.getElementById("token-clear");
  clear.hidden = !sessionStorage.getItem(TOKEN_KEY);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const input = document.getElementById("token-input");
    if (!input.value.trim()) return;
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    input.value = "";
    form.hidden = true;
    clear.hidden = false;
    onChange();
  });
  clear.addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    clear.hidden = true;
    onChange();
  });
  if (document.body.dataset.auth === "token" && !sessionStorage.getItem(TOKEN_KEY)) {
    showTokenForm(false);
  }
}

// ---------------------------------------------------------------- polling

const live = { lastOk: 0, error: null, needsToken: false };

export function renderLive() {
  const node = document.getElementById("live");
  if (live.needsToken) {
    node.dataset.state = "error";
    node.textContent = "waiting for the token";
  } else if (live.error) {
    node.dataset.state = "error";
    node.textContent = `offline: ${live.error} (retrying)`;
  } else if (live.lastOk) {
    node.dataset.state = "live";
    const ago = Math.round((Date.now() - live.lastOk) / 1000);
    node.textContent = ago < 3 ? "live" : `updated ${ago} s ago`;
  }
}

// Calls fn now and again after each completion; waits longer when a poll is slow (a huge job)
// or the tab is hidden, so a forgotten tab never hammers the orchestrator.
export function poller(fn, baseMs) {
  let timer = null;
  let running = false;
  let again = false;
  async function tick() {
    clearTimeout(timer);
    if (running) {
      again = true;
      return;
    }
    running = true;
    const started = performance.now();
    try {
      await fn();
      live.lastOk = Date.now();
      live.error = null;
      live.needsToken = false;
    } catch (error) {
      live.needsToken = error instanceof HttpError && (error.status === 401 || error.status === 403);
      live.error = error instanceof HttpError ? error.message : "cannot reach the orchestrator";
      if (!(error instanceof HttpError)) console.error(error);
    }
    renderLive();
    running = false;
    const took = performance.now() - started;
    let delay = Math.min(15000, Math.max(baseMs, took * 5));
    if (document.hidden) delay = Math.max(delay, 10000);
    timer = setTimeout(tick, again ? 0 : delay);
    again = false;
  }
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) tick();
  });
  tick();
  return { now: tick };
}

// ---------------------------------------------------------------- small helpers

export function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (key === "text") node.textContent = String(value);
    else if (key === "class") node.className = value;
    else node.setAttribute(key, String(value));
  }
  for (const child of children) node.append(child);
  return node;
}

export function setText(id, value) {
  const node = typeof id === "string" ? document.getElementById(id) : id;
  const text = value === undefined || value === null ? "–" : String(value);
  if (node.textContent !== text) node.textContent = text;
}

export function num(value, fallback = 0) {
  return typeof value === "number" && Number.isFinite(value) ? value : fallback;
}

export function listOf(data, key) {
  if (Array.isArray(data)) return data;
  if (data && Array.isArray(data[key])) return data[key];
  return [];
}

export function duration(seconds) {
  if (typeof seconds !== "number" || !Number.isFinite(seconds) || seconds < 0) return "–";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(s % 60).padStart(2, "0")} s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${String(m % 60).padStart(2, "0")} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

// Axis labels: 0:45, 12:30, 1:05:00.
export function timecode(seconds) {
  const s = Math.round(seconds);
  const two = (n) => String(n).padStart(2, "0");
  if (s < 3600) return `${Math.floor(s / 60)}:${two(s % 60)}`;
  return `${Math.floor(s / 3600)}:${two(Math.floor(s / 60) % 60)}:${two(s % 60)}`;
}

export function ago(unixSeconds) {
  if (typeof unixSeconds !== "number") return "–";
  const seconds = Math.max(0, Date.now() / 1000 - unixSeconds);
  return seconds < 2 ? "just now" : `${duration(seconds)} ago`;
}

export function clock(unixSeconds) {
  if (typeof unixSeconds !== "number") return "–";
  const date = new Date(unixSeconds * 1000);
  const sameDay = date.toDateString() === new Date().toDateString();
  const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return sameDay ? time : `${date.toLocaleDateString()} ${time}`;
}

export function elapsedOf(job) {
  if (typeof job.elapsed_seconds === "number") return job.elapsed_seconds;
  if (typeof job.started !== "number") return null;
  const end = typeof job.finished === "number" ? job.finished : Date.now() / 1000;
  return end - job.started;
}

export function frameCounts(job) {
  const frames = job.frames && typeof job.frames === "object" ? job.frames : {};
  return {
    total: num(frames.total),
    done: num(frames.done),
    failed: num(frames.failed),
    rendering: num(frames.rendering),
  };
}

export function progressOf(job) {
  if (typeof job.progress === "number") return Math.max(0, Math.min(1, job.progress));
  const counts = frameCounts(job);
  return counts.total ? counts.done / counts.total : 0;
}

export function percent(fraction, digits) {
  const places = digits ?? (fraction > 0 && fraction < 0.1 ? 1 : 0);
  return `${(fraction * 100).toFixed(places)}%`;
}

export function isActive(state) {
  return state === "queued" || state === "running";
}

// A stacked bar: done, then rendering, then failed, so trouble shows before reading numbers.
export function progressBar(extra = "") {
  return el("div", { class: `progress ${extra}`.trim() }, [
    el("span", { class: "seg-d" }),
    el("span", { class: "seg-r" }),
    el("span", { class: "seg-f" }),
  ]);
}

export function setBar(bar, job) {
  const counts = frameCounts(job);
  const total = counts.total;
  const share = (n) => (total ? percent(Math.min(1, n / total), 2) : "0%");
  bar.classList.remove(...[...bar.classList].filter((c) => c.startsWith("s-")));
  if (job.state) bar.classList.add(`s-${String(job.state).replace(/[^a-z]/g, "")}`);
  const [done, rendering, failed] = bar.children;
  done.style.width = total ? share(counts.done) : percent(progressOf(job), 2);
  // Counters read at slightly different moments can add up past the total: clamp.
  const failedN = Math.min(counts.failed, Math.max(0, total - counts.done));
  rendering.style.width = share(Math.min(counts.rendering, Math.max(0, total - counts.done - failedN)));
  failed.style.width = share(failedN);
  // Animate changes, not the first paint (a bar growing from 0 misreads as progress).
  if (!bar.classList.contains("animated")) requestAnimationFrame(() => bar.classList.add("animated"));
}

export function count(n) {
  return typeof n === "number" ? n.toLocaleString() : "–";
}

export function badge(node, state) {
  const text = state || "unknown";
  node.className = `badge s-${text.replace(/[^a-z]/g, "")}`;
  setText(node, text);
}

export function nodeLabel(url, nodes) {
  if (!url) return "unassigned";
  const info = nodes && nodes[url];
  if (info && typeof info.name === "string" && info.name) return info.name;
  try {
    return new URL(url).host;
  } catch {
    return String(url);
  }
}

// Frame specs as the orchestrator writes them: "1-8", "1-10x2", "1,3,7", "1-10,20-30x2".
export function parseSpec(spec) {
  if (typeof spec === "number") return [spec];
  if (Array.isArray(spec)) return spec.filter((f) => typeof f === "number");
  const frames = [];
  for (const part of String(spec || "").split(",")) {
    const match = /^\s*(-?\d+)\s*(?:-\s*(-?\d+)\s*(?:x\s*(\d+))?)?\s*$/.exec(part);
    if (!match) continue;
    const first = Number(match[1]);
    const last = match[2] === undefined ? first : Number(match[2]);
    const step = Math.max(1, Number(match[3] || 1));
    for (let f = first; f <= last && frames.length < 100000; f += step) frames.push(f);
  }
  return frames;
}

// Reuses a row per key so rows don't flicker and buttons keep focus between polls.
export function syncRows(tbody, items, keyOf, create, update) {
  const existing = new Map();
  for (const row of tbody.rows) existing.set(row.dataset.key, row);
  let previous = null;
  for (const item of items) {
    const key = String(keyOf(item));
    let row = existing.get(key);
    if (row) existing.delete(key);
    else {
      row = create(item);
      row.dataset.key = key;
    }
    update(row, item);
    const wanted = previous ? previous.nextSibling : tbody.firstChild;
    if (row !== wanted) tbody.insertBefore(row, wanted);
    previous = row;
  }
  for (const row of existing.values()) row.remove();
}

export async function cancelJob(id, label) {
  const ok = window.confirm(`Cancel job ${label}? Frames already rendered are kept.`);
  if (!ok) return false;
  try {
    await api(`/render/${encodeURIComponent(id)}`, { method: "DELETE" });
    return true;
  } catch (error) {
    window.alert(`Could not cancel: ${error.message}`);
    return false;
  }
}

// Frames of a finished job rendered again: those the user names, or (empty) every frame not
// done, which also resumes a cancelled job. Returns the farm's answer, or null.
export async function requeueJob(id, label) {
  const asked = window.prompt(
    `Render frames of job ${label} again: which frames (e.g. 10-20, done ones too)? ` +
      "Leave it empty for every frame not done (failed ones, and a cancelled job's rest).",
    "",
  );
  if (asked === null) return null;
  const body = asked.trim() ? { frames: asked.trim() } : { failed: true };
  try {
    return await api(`/render/${encodeURIComponent(id)}/requeue`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  } catch (error) {
    window.alert(`Could not requeue: ${error.message}`);
    return null;
  }
}
