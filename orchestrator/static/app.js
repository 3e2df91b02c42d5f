// Render farm dashboard: polls the orchestrator's JSON API and draws the pages. Plain JS, no build.
// Data only ever reaches the DOM through textContent and attributes, never parsed as markup.
"use strict";

(() => {
  const TOKEN_KEY = "farm-token";
  const POLL_MS = 1500;
  const THUMBS = 8;
  const COLORS = {
    p: "#4a505c",
    r: "#e3b341",
    d: "#3fb950",
    f: "#f85149",
    c: "#6e7681",
    "?": "#2b2f38",
  };
  const BATCH_COLORS = {
    running: COLORS.r,
    done: COLORS.d,
    completed: COLORS.d,
    failed: COLORS.f,
    cancelled: COLORS.c,
    queued: COLORS.p,
  };
  const STATE_NAMES = { p: "pending", r: "rendering", d: "done", f: "failed", c: "cancelled" };

  // ---------------------------------------------------------------- token and HTTP

  // The token arrives once as ?token=..., lives in sessionStorage (this tab), leaves the URL.
  function captureToken() {
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

  class HttpError extends Error {
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

  async function api(path, options = {}) {
    const response = await request(path, {
      ...options,
      headers: { Accept: "application/json", ...(options.headers || {}) },
    });
    return response.status === 204 ? null : response.json();
  }

  // <img> and <video> cannot send headers: fetch the bytes with the token, show an object URL.
  async function blobUrl(path) {
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

  function setupToken(onChange) {
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

  function renderLive() {
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
  function poller(fn, baseMs) {
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

  function el(tag, props = {}, children = []) {
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

  function setText(id, value) {
    const node = typeof id === "string" ? document.getElementById(id) : id;
    const text = value === undefined || value === null ? "–" : String(value);
    if (node.textContent !== text) node.textContent = text;
  }

  function num(value, fallback = 0) {
    return typeof value === "number" && Number.isFinite(value) ? value : fallback;
  }

  function listOf(data, key) {
    if (Array.isArray(data)) return data;
    if (data && Array.isArray(data[key])) return data[key];
    return [];
  }

  function duration(seconds) {
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
  function timecode(seconds) {
    const s = Math.round(seconds);
    const two = (n) => String(n).padStart(2, "0");
    if (s < 3600) return `${Math.floor(s / 60)}:${two(s % 60)}`;
    return `${Math.floor(s / 3600)}:${two(Math.floor(s / 60) % 60)}:${two(s % 60)}`;
  }

  function ago(unixSeconds) {
    if (typeof unixSeconds !== "number") return "–";
    const seconds = Math.max(0, Date.now() / 1000 - unixSeconds);
    return seconds < 2 ? "just now" : `${duration(seconds)} ago`;
  }

  function clock(unixSeconds) {
    if (typeof unixSeconds !== "number") return "–";
    const date = new Date(unixSeconds * 1000);
    const sameDay = date.toDateString() === new Date().toDateString();
    const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    return sameDay ? time : `${date.toLocaleDateString()} ${time}`;
  }

  function elapsedOf(job) {
    if (typeof job.elapsed_seconds === "number") return job.elapsed_seconds;
    if (typeof job.started !== "number") return null;
    const end = typeof job.finished === "number" ? job.finished : Date.now() / 1000;
    return end - job.started;
  }

  function frameCounts(job) {
    const frames = job.frames && typeof job.frames === "object" ? job.frames : {};
    return {
      total: num(frames.total),
      done: num(frames.done),
      failed: num(frames.failed),
      rendering: num(frames.rendering),
    };
  }

  function progressOf(job) {
    if (typeof job.progress === "number") return Math.max(0, Math.min(1, job.progress));
    const counts = frameCounts(job);
    return counts.total ? counts.done / counts.total : 0;
  }

  function percent(fraction, digits) {
    const places = digits ?? (fraction > 0 && fraction < 0.1 ? 1 : 0);
    return `${(fraction * 100).toFixed(places)}%`;
  }

  function isActive(state) {
    return state === "queued" || state === "running";
  }

  // A stacked bar: done, then rendering, then failed, so trouble shows before reading numbers.
  function progressBar(extra = "") {
    return el("div", { class: `progress ${extra}`.trim() }, [
      el("span", { class: "seg-d" }),
      el("span", { class: "seg-r" }),
      el("span", { class: "seg-f" }),
    ]);
  }

  function setBar(bar, job) {
    const counts = frameCounts(job);
    const total = counts.total;
    const share = (n) => (total ? percent(Math.min(1, n / total), 2) : "0%");
    bar.classList.remove(...[...bar.classList].filter((c) => c.startsWith("s-")));
    if (job.state) bar.classList.add(`s-${String(job.state).replace(/[^a-z]/g, "")}`);
    const [done, rendering, failed] = bar.children;
    done.style.width = total ? share(counts.done) : percent(progressOf(job), 2);
    rendering.style.width = share(counts.rendering);
    failed.style.width = share(counts.failed);
    // Animate changes, not the first paint (a bar growing from 0 misreads as progress).
    if (!bar.classList.contains("animated")) requestAnimationFrame(() => bar.classList.add("animated"));
  }

  function count(n) {
    return typeof n === "number" ? n.toLocaleString() : "–";
  }

  function badge(node, state) {
    const text = state || "unknown";
    node.className = `badge s-${text.replace(/[^a-z]/g, "")}`;
    setText(node, text);
  }

  function nodeLabel(url, nodes) {
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
  function parseSpec(spec) {
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
  function syncRows(tbody, items, keyOf, create, update) {
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

  async function cancelJob(id, label) {
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

  // ---------------------------------------------------------------- overview page

  const STATE_ORDER = { running: 0, queued: 1 };
  const MAX_FINISHED = 50;

  function overviewPage() {
    const jobsBody = document.querySelector("#jobs tbody");
    const nodesBody = document.querySelector("#nodes tbody");
    let poll = null;

    function createJobRow() {
      const link = el("a", { class: "scene" });
      const id = el("span", { class: "sub mono" });
      const cancel = el("button", { class: "btn btn-small btn-danger", type: "button", text: "Cancel" });
      const row = el("tr", {}, [
        el("td", {}, [link, id]),
        el("td", {}, [el("span", { class: "badge" })]),
        el("td", {}, [
          el("div", { class: "progress-cell" }, [
            progressBar(),
            el("span", { class: "pct" }),
          ]),
        ]),
        el("td", { class: "num frames" }),
        el("td", { class: "num" }),
        el("td", { class: "num" }),
        el("td", { class: "num" }),
        el("td", { class: "num" }, [cancel]),
      ]);
      cancel.addEventListener("click", async () => {
        cancel.disabled = true;
        if (await cancelJob(row.dataset.key, row.dataset.label)) poll.now();
        cancel.disabled = false;
      });
      return row;
    }

    function updateJobRow(row, job) {
      const cells = row.cells;
      const counts = frameCounts(job);
      const progress = progressOf(job);
      const scene = job.scene ? String(job.scene) : "(scene)";
      row.dataset.label = `${scene} (${job.id})`;
      const link = cells[0].firstChild;
      const href = `/jobs/${encodeURIComponent(job.id)}`;
      if (link.getAttribute("href") !== href) link.setAttribute("href", href);
      setText(link, scene.replace(/^sha256:([0-9a-f]{12})[0-9a-f]*$/, "sha256:$1…"));
      setText(cells[0].lastChild, job.id);
      badge(cells[1].firstChild, job.state);
      setBar(cells[2].querySelector(".progress"), job);
      setText(cells[2].querySelector(".pct"), percent(progress));
      const frames = cells[3];
      frames.replaceChildren(`${count(counts.done)} / ${count(counts.total)}`);
      if (counts.failed) frames.append(el("span", { class: "frames-failed", text: `${count(counts.failed)} failed` }));
      setText(cells[4], duration(elapsedOf(job)));
      setText(cells[5], isActive(job.state) ? duration(job.eta_seconds) : "–");
      setText(cells[6], typeof job.priority === "number" ? job.priority : "–");
      cells[7].firstChild.hidden = !isActive(job.state);
    }

    function createNodeRow() {
      return el("tr", {}, [
        el("td", {}, [el("span", { class: "name" }), el("span", { class: "sub mono" })]),
        el("td", {}, [el("span", { class: "badge" })]),
        el("td"),
        el("td", { class: "mono" }),
        el("td", { class: "num" }),
        el("td"),
        el("td", { class: "num" }),
      ]);
    }

    function updateNodeRow(row, node) {
      const cells = row.cells;
      const url = node.url ? String(node.url) : "";
      setText(cells[0].firstChild, node.name || nodeLabel(url, null));
      setText(cells[0].lastChild, url);
      badge(cells[1].firstChild, node.state);
      row.classList.toggle("lost", node.state === "lost");
      const slots = Math.max(0, Math.min(64, num(node.slots)));
      const busy = num(node.busy);
      const pips = el("span", { class: "slots" });
      for (let i = 0; i < slots; i++) pips.append(el("span", { class: i < busy ? "slot busy" : "slot" }));
      cells[2].replaceChildren(pips, `${busy} / ${num(node.slots)}`);
      const batch = node.current_batch;
      let batchText = "–";
      if (batch && typeof batch === "object") {
        batchText = [batch.job || batch.job_id, batch.frames].filter(Boolean).join(" · ") || "busy";
      } else if (batch !== undefined && batch !== null && batch !== "") {
        batchText = String(batch);
      }
      setText(cells[3], batchText);
      setText(cells[4], num(node.frames_rendered));
      setText(cells[5], node.blender_version || "–");
      setText(cells[6], ago(node.last_seen));
    }

    function renderSummary(jobs, nodes) {
      setText("sum-running", jobs.filter((j) => j.state === "running").length);
      setText("sum-queued", jobs.filter((j) => j.state === "queued").length);
      const up = nodes.filter((n) => n.state !== "lost");
      setText("sum-nodes", nodes.length ? `${up.length} / ${nodes.length}` : "0");
      const slots = up.reduce((sum, n) => sum + num(n.slots), 0);
      const busy = up.reduce((sum, n) => sum + num(n.busy), 0);
      setText("sum-slots", `${busy} / ${slots}`);
      // A farm of mixed Blender versions renders frames that differ: say so.
      const versions = new Map();
      for (const n of up) {
        if (n.blender_version) versions.set(n.blender_version, (versions.get(n.blender_version) || 0) + 1);
      }
      const warning = document.getElementById("mixed-versions");
      warning.hidden = versions.size < 2;
      if (versions.size > 1) {
        const parts = [...versions].map(([v, count]) => `${v} (${count} node${count > 1 ? "s" : ""})`);
        setText(warning, `Mixed Blender versions on the farm: ${parts.join(", ")}. Frames of one job may differ.`);
      }
    }

    async function refresh() {
      const [jobData, nodeData] = await Promise.all([api("/render"), api("/nodes")]);
      const jobs = listOf(jobData, "jobs").filter((j) => j && j.id !== undefined);
      jobs.sort(
        (a, b) =>
          (STATE_ORDER[a.state] ?? 2) - (STATE_ORDER[b.state] ?? 2) ||
          num(b.priority) - num(a.priority) ||
          num(b.created) - num(a.created),
      );
      const nodes = listOf(nodeData, "nodes").filter((n) => n && typeof n === "object");
      nodes.sort((a, b) => String(a.name || a.url).localeCompare(String(b.name || b.url)));
      // Every active job, and the most recent finished ones: a long-lived farm has thousands.
      const active = jobs.filter((j) => isActive(j.state));
      const finished = jobs.filter((j) => !isActive(j.state));
      const shown = [...active, ...finished.slice(0, MAX_FINISHED)];
      syncRows(jobsBody, shown, (j) => j.id, createJobRow, updateJobRow);
      const older = document.getElementById("jobs-older");
      older.hidden = shown.length === jobs.length;
      setText(older, `…and ${count(jobs.length - shown.length)} older finished jobs.`);
      syncRows(nodesBody, nodes, (n) => n.url || n.name, createNodeRow, updateNodeRow);
      document.getElementById("jobs-empty").hidden = jobs.length > 0;
      document.getElementById("jobs").hidden = jobs.length === 0;
      document.getElementById("nodes-empty").hidden = nodes.length > 0;
      document.getElementById("nodes").hidden = nodes.length === 0;
      renderSummary(jobs, nodes);
    }

    poll = poller(refresh, POLL_MS);
    return poll;
  }

  // ---------------------------------------------------------------- job page: frame grid

  class FrameMap {
    constructor(data) {
      this.states = typeof data.states === "string" ? data.states : "";
      this.first = num(data.first, 1);
      this.step = num(data.step, 1) || 1;
      this.frames = Array.isArray(data.frames) ? data.frames : null;
      this.index = null;
    }

    static fromFrames(list) {
      const frames = [];
      let states = "";
      for (const item of list) {
        frames.push(item.frame);
        const state = String(item.state || "");
        states += { pending: "p", queued: "p", rendering: "r", done: "d", failed: "f", cancelled: "c" }[state] || "?";
      }
      return new FrameMap({ first: frames[0] ?? 1, frames, states });
    }

    get length() {
      return this.states.length;
    }

    frameAt(i) {
      return this.frames ? this.frames[i] : this.first + i * this.step;
    }

    indexOf(frame) {
      if (!this.frames) {
        const i = (frame - this.first) / this.step;
        return Number.isInteger(i) && i >= 0 && i < this.length ? i : -1;
      }
      if (!this.index) this.index = new Map(this.frames.map((f, i) => [f, i]));
      return this.index.get(frame) ?? -1;
    }

    stateOf(frame) {
      const i = this.indexOf(frame);
      return i < 0 ? "" : this.states[i];
    }

    counts() {
      const counts = { p: 0, r: 0, d: 0, f: 0, c: 0 };
      for (let i = 0; i < this.states.length; i++) {
        const c = this.states[i];
        if (c in counts) counts[c]++;
      }
      return counts;
    }
  }

  // Draws every frame as a cell on one canvas: 100,000 frames are a few hundred rectangles when
  // cells are small (runs of one state merge), a few thousand when they are big enough to gap.
  class FrameGrid {
    constructor(canvas, onPick, onHover) {
      this.canvas = canvas;
      this.map = null;
      this.layout = null;
      this.key = "";
      canvas.addEventListener("mousemove", (event) => onHover(this.hit(event)));
      canvas.addEventListener("mouseleave", () => onHover(null));
      canvas.addEventListener("click", (event) => {
        const hit = this.hit(event);
        if (hit) onPick(hit);
      });
      window.addEventListener("resize", () => this.draw(this.map, true));
    }

    hit(event) {
      if (!this.layout || !this.map) return null;
      const rect = this.canvas.getBoundingClientRect();
      const { cell, cols } = this.layout;
      const col = Math.floor((event.clientX - rect.left) / cell);
      const row = Math.floor((event.clientY - rect.top) / cell);
      if (col < 0 || col >= cols || row < 0) return null;
      const i = row * cols + col;
      if (i >= this.map.length) return null;
      return { index: i, frame: this.map.frameAt(i), state: this.map.states[i] };
    }

    draw(map, force = false) {
      if (!map) return;
      this.map = map;
      const width = Math.max(200, this.canvas.parentElement.clientWidth);
      const key = `${width}|${map.first}|${map.step}|${map.states}`;
      if (!force && key === this.key) return;
      this.key = key;
      const n = Math.max(1, map.length);
      // Biggest cell that keeps the grid under ~360 px tall; never below 2 px.
      let cell = 22;
      while (cell > 2 && Math.ceil(n / Math.floor(width / cell)) * cell > 360) cell--;
      let cols = Math.max(1, Math.floor(width / cell));
      // Big cells: rows of a round number of frames, so frame numbers are easy to find.
      if (cell >= 6 && cols >= 20 && n > cols) cols -= cols % 10;
      const rows = Math.ceil(n / cols);
      this.layout = { cell, cols, rows };
      this.canvas.dataset.cols = String(cols);
      this.canvas.dataset.cell = String(cell);
      const dpr = window.devicePixelRatio || 1;
      const cssW = cols * cell;
      const cssH = rows * cell;
      this.canvas.style.width = `${cssW}px`;
      this.canvas.style.height = `${cssH}px`;
      this.canvas.width = Math.round(cssW * dpr);
      this.canvas.height = Math.round(cssH * dpr);
      const ctx = this.canvas.getContext("2d");
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.clearRect(0, 0, cssW, cssH);
      const states = map.states;
      const gap = cell >= 6 ? 1 : 0;
      const radius = cell >= 10 ? 2 : 0;
      for (let row = 0; row < rows; row++) {
        const start = row * cols;
        const end = Math.min(states.length, start + cols);
        let i = start;
        while (i < end) {
          const c = states[i];
          let j = i + 1;
          if (!gap) while (j < end && states[j] === c) j++;
          ctx.fillStyle = COLORS[c] || COLORS["?"];
          const x = (i - start) * cell;
          const w = (j - i) * cell - gap;
          if (radius) {
            ctx.beginPath();
            ctx.roundRect(x, row * cell, w, cell - gap, radius);
            ctx.fill();
          } else {
            ctx.fillRect(x, row * cell, w, cell - gap);
          }
          i = j;
        }
      }
      // At 2-5 px a lone failed or rendering frame would vanish among thousands: mark them.
      if (cell < 6) {
        const mark = 5;
        for (let i = 0; i < states.length; i++) {
          const c = states[i];
          if (c !== "f" && c !== "r") continue;
          const x = (i % cols) * cell + cell / 2 - mark / 2;
          const y = Math.floor(i / cols) * cell + cell / 2 - mark / 2;
          ctx.fillStyle = "#16181d";
          ctx.fillRect(x - 1, y - 1, mark + 2, mark + 2);
          ctx.fillStyle = COLORS[c];
          ctx.fillRect(x, y, mark, mark);
        }
      }
    }
  }

  // ---------------------------------------------------------------- job page: timeline

  class Timeline {
    constructor(canvas, onHover) {
      this.canvas = canvas;
      this.bars = [];
      this.data = null;
      canvas.addEventListener("mousemove", (event) => onHover(this.hit(event)));
      canvas.addEventListener("mouseleave", () => onHover(null));
      window.addEventListener("resize", () => this.draw(this.data));
    }

    hit(event) {
      const rect = this.canvas.getBoundingClientRect();
      const x = event.clientX - rect.left;
      const y = event.clientY - rect.top;
      let best = null;
      for (const bar of this.bars) {
        if (y >= bar.y && y <= bar.y + bar.h && x >= bar.x - 2 && x <= bar.x + bar.w + 2) {
          if (!best || Math.abs(x - (bar.x + bar.w / 2)) < Math.abs(x - (best.x + best.w / 2))) best = bar;
        }
      }
      return best ? best.batch : null;
    }

    // data: {lanes: [{url, label}], batches: [...], start, end}
    draw(data) {
      if (!data) return;
      this.data = data;
      const LABEL = 150;
      const LANE = 26;
      const AXIS = 22;
      const width = Math.max(320, this.canvas.parentElement.clientWidth);
      const height = AXIS + data.lanes.length * LANE + 4;
      const dpr = window.devicePixelRatio || 1;
      this.canvas.style.width = `${width}px`;
      this.canvas.style.height = `${height}px`;
      this.canvas.width = Math.round(width * dpr);
      this.canvas.height = Math.round(height * dpr);
      const ctx = this.canvas.getContext("2d");
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.clearRect(0, 0, width, height);
      const span = Math.max(1, data.end - data.start);
      const plot = width - LABEL - 8;
      const xOf = (t) => LABEL + ((t - data.start) / span) * plot;
      ctx.font = "12px system-ui, sans-serif";
      ctx.textBaseline = "middle";

      // Axis: ticks at a round interval giving ~6-10 labels.
      const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400];
      const tick = steps.find((s) => (s / span) * plot >= 70) || 86400;
      ctx.fillStyle = "#9aa1ad";
      ctx.strokeStyle = "#2a2e37";
      ctx.lineWidth = 1;
      for (let t = 0; t <= span + 1e-6; t += tick) {
        const x = Math.round(xOf(data.start + t)) + 0.5;
        ctx.beginPath();
        ctx.moveTo(x, AXIS - 4);
        ctx.lineTo(x, height);
        ctx.stroke();
        const label = timecode(t);
        ctx.textAlign = t === 0 ? "left" : "center";
        if (x < width - 20) ctx.fillText(label, x, AXIS / 2);
      }

      this.bars = [];
      data.lanes.forEach((lane, li) => {
        const y = AXIS + li * LANE;
        ctx.fillStyle = li % 2 ? "rgba(255,255,255,0.015)" : "rgba(255,255,255,0.035)";
        ctx.fillRect(0, y, width, LANE);
        ctx.fillStyle = "#e6e8ec";
        ctx.textAlign = "left";
        let label = lane.label;
        while (label.length > 3 && ctx.measureText(label).width > LABEL - 16) label = `${label.slice(0, -2)}…`;
        ctx.fillText(label, 8, y + LANE / 2);
      });
      const laneIndex = new Map(data.lanes.map((lane, i) => [lane.url, i]));
      for (const batch of data.batches) {
        const li = laneIndex.get(batch.node);
        if (li === undefined || typeof batch.started !== "number") continue;
        const end = typeof batch.finished === "number" ? batch.finished : data.now;
        const x = xOf(batch.started);
        const w = Math.max(2, xOf(end) - x - 1);
        const y = AXIS + li * LANE + 4;
        const h = LANE - 8;
        ctx.fillStyle = BATCH_COLORS[batch.state] || COLORS.p;
        ctx.fillRect(x, y, w, h);
        if (w > 44) {
          ctx.fillStyle = "#111317";
          ctx.textAlign = "left";
          const text = String(batch.frames ?? "");
          if (ctx.measureText(text).width < w - 8) ctx.fillText(text, x + 4, y + h / 2 + 0.5);
        }
        this.bars.push({ x, y, w, h, batch });
      }
    }
  }

  // ---------------------------------------------------------------- job page: images

  class Images {
    constructor(jobId) {
      this.jobId = jobId;
      this.urls = new Map(); // frame -> Promise<objectURL>
    }

    path(frame) {
      return `/render/${encodeURIComponent(this.jobId)}/frames/${encodeURIComponent(frame)}`;
    }

    get(frame) {
      if (!this.urls.has(frame)) {
        const promise = blobUrl(this.path(frame));
        promise.catch(() => this.urls.delete(frame));
        this.urls.set(frame, promise);
      }
      return this.urls.get(frame);
    }

    // Frees the images no longer on screen; the open viewer's frame is kept.
    keep(frames) {
      for (const [frame, promise] of this.urls) {
        if (!frames.has(frame)) {
          this.urls.delete(frame);
          promise.then((url) => URL.revokeObjectURL(url), () => {});
        }
      }
    }
  }

  // ---------------------------------------------------------------- job page

  function jobPage(jobId) {
    const base = `/render/${encodeURIComponent(jobId)}`;
    const images = new Images(jobId);
    let job = null;
    let map = null;
    let framemapMissing = false;
    let shownThumbs = [];
    let videoUrl = null;
    let detailPoll = null;
    let mapPoll = null;

    // ---- viewer (frames and the preview video, fetched with the token)
    const viewer = document.getElementById("viewer");
    const viewerBody = document.getElementById("viewer-body");
    let viewing = null;

    function doneFrames() {
      const list = [];
      if (map) for (let i = 0; i < map.length; i++) if (map.states[i] === "d") list.push(map.frameAt(i));
      return list;
    }

    function setViewerLinks(url, name) {
      const open = document.getElementById("viewer-open");
      const download = document.getElementById("viewer-download");
      open.href = url;
      download.href = url;
      download.setAttribute("download", name);
    }

    async function showFrame(frame) {
      viewing = frame;
      setText("viewer-title", `Frame ${frame}`);
      document.getElementById("viewer-prev").hidden = false;
      document.getElementById("viewer-next").hidden = false;
      if (!viewer.open) viewer.showModal();
      viewerBody.replaceChildren(el("p", { class: "empty", text: "Loading…" }));
      try {
        const url = await images.get(frame);
        if (viewing !== frame) return;
        const img = el("img", { alt: `Frame ${frame}` });
        img.src = url;
        viewerBody.replaceChildren(img);
        // Paging through frames must not pile up full-size images in memory.
        images.keep(new Set([...shownThumbs, frame]));
        setViewerLinks(url, `frame_${String(frame).padStart(5, "0")}.png`);
      } catch (error) {
        if (viewing === frame) viewerBody.replaceChildren(el("p", { class: "empty", text: `Could not load frame ${frame}: ${error.message}` }));
      }
    }

    function step(delta) {
      if (viewing === null || viewing === "video") return;
      const frames = doneFrames();
      const i = frames.indexOf(viewing);
      const next = frames[i + delta];
      if (next !== undefined) showFrame(next);
    }

    async function showVideo() {
      viewing = "video";
      setText("viewer-title", "Preview video");
      document.getElementById("viewer-prev").hidden = true;
      document.getElementById("viewer-next").hidden = true;
      viewer.showModal();
      viewerBody.replaceChildren(el("p", { class: "empty", text: "Loading video…" }));
      try {
        if (!videoUrl) videoUrl = await blobUrl(`${base}/video.mp4`);
        const video = el("video", { controls: "", autoplay: "", loop: "", playsinline: "" });
        video.src = videoUrl;
        viewerBody.replaceChildren(video);
        setViewerLinks(videoUrl, `${jobId}.mp4`);
      } catch (error) {
        viewerBody.replaceChildren(el("p", { class: "empty", text: `Could not load the video: ${error.message}` }));
      }
    }

    document.getElementById("viewer-close").addEventListener("click", () => viewer.close());
    document.getElementById("viewer-prev").addEventListener("click", () => step(-1));
    document.getElementById("viewer-next").addEventListener("click", () => step(1));
    viewer.addEventListener("click", (event) => {
      if (event.target === viewer) viewer.close();
    });
    viewer.addEventListener("close", () => {
      viewing = null;
      viewerBody.replaceChildren();
      images.keep(new Set(shownThumbs));
    });
    document.addEventListener("keydown", (event) => {
      if (!viewer.open) return;
      if (event.key === "ArrowLeft") step(-1);
      if (event.key === "ArrowRight") step(1);
    });
    document.getElementById("job-video").addEventListener("click", showVideo);

    // ---- header
    const cancelButton = document.getElementById("job-cancel");
    cancelButton.addEventListener("click", async () => {
      cancelButton.disabled = true;
      if (await cancelJob(jobId, job && job.scene ? `${job.scene} (${jobId})` : jobId)) {
        detailPoll.now();
        mapPoll.now();
      }
      cancelButton.disabled = false;
    });

    function renderHeader() {
      const counts = frameCounts(job);
      const progress = progressOf(job);
      setText("job-scene", job.scene ? String(job.scene) : `Job ${jobId}`);
      document.title = `${percent(progress)} · ${job.scene || jobId} · Render farm`;
      badge(document.getElementById("job-state"), job.state);
      setBar(document.getElementById("job-bar"), job);
      setText("job-progress", percent(progress));
      setText("job-done", `${count(counts.done)} / ${count(counts.total)}`);
      setText("job-rendering", count(counts.rendering));
      setText("job-failed", count(counts.failed));
      document.getElementById("job-failed").classList.toggle("has-failed", counts.failed > 0);
      setText("job-elapsed", duration(elapsedOf(job)));
      setText("job-eta", isActive(job.state) ? duration(job.eta_seconds) : "–");
      setText("job-created", clock(job.created));
      cancelButton.hidden = !isActive(job.state);
      document.getElementById("job-video").hidden = !job.video;
      const error = document.getElementById("job-error");
      error.hidden = !job.error;
      if (job.error) setText(error, job.error);
    }

    // ---- frame grid
    const readout = document.getElementById("grid-readout");
    const gridCanvas = document.getElementById("grid");
    const grid = new FrameGrid(
      gridCanvas,
      (hit) => {
        if (hit.state === "d") showFrame(hit.frame);
      },
      (hit) => {
        gridCanvas.classList.toggle("clickable", Boolean(hit && hit.state === "d"));
        if (!hit) setText(readout, "Hover a frame; click a done one to view it.");
        else setText(readout, `Frame ${hit.frame} · ${STATE_NAMES[hit.state] || "unknown"}`);
      },
    );

    function renderMap() {
      grid.draw(map);
      const counts = map.counts();
      for (const node of document.querySelectorAll("#grid-legend [data-count]")) {
        setText(node, count(counts[node.dataset.count] ?? 0));
      }
    }

    async function refreshMap() {
      if (!framemapMissing) {
        try {
          map = new FrameMap(await api(`${base}/framemap`));
        } catch (error) {
          if (!(error instanceof HttpError && error.status === 404 && job)) throw error;
          framemapMissing = true; // an orchestrator without the compact endpoint
        }
      }
      if (framemapMissing) map = FrameMap.fromFrames(listOf(await api(`${base}/frames`), "frames"));
      renderMap();
      renderThumbs();
    }

    // ---- thumbnails: the freshest done frames, judged by batch times when the API gives them
    function latestDone() {
      const picked = [];
      const seen = new Set();
      const take = (frame) => {
        if (picked.length < THUMBS && !seen.has(frame) && map.stateOf(frame) === "d") {
          seen.add(frame);
          picked.push(frame);
        }
      };
      const batches = job && Array.isArray(job.batches) ? job.batches : [];
      const running = batches.filter((b) => b.state === "running").sort((a, b) => num(b.started) - num(a.started));
      const finished = batches
        .filter((b) => typeof b.finished === "number")
        .sort((a, b) => b.finished - a.finished);
      for (const batch of [...running, ...finished]) {
        if (picked.length >= THUMBS) break;
        for (const frame of parseSpec(batch.frames).reverse()) take(frame);
      }
      for (let i = map.length - 1; i >= 0 && picked.length < THUMBS; i--) {
        if (map.states[i] === "d") take(map.frameAt(i));
      }
      return picked;
    }

    function renderThumbs() {
      if (!map) return;
      const frames = latestDone();
      const container = document.getElementById("thumbs");
      document.getElementById("thumbs-empty").hidden = frames.length > 0;
      if (frames.join() === shownThumbs.join()) return;
      shownThumbs = frames;
      const existing = new Map([...container.children].map((fig) => [Number(fig.dataset.frame), fig]));
      const figures = frames.map((frame) => {
        let fig = existing.get(frame);
        if (!fig) {
          const img = el("img", { alt: `Frame ${frame}`, loading: "lazy" });
          const button = el("button", { type: "button", title: `Frame ${frame}: view full size` }, [img]);
          button.addEventListener("click", () => showFrame(frame));
          fig = el("figure", { class: "thumb" }, [button, el("figcaption", { text: `Frame ${frame}` })]);
          fig.dataset.frame = String(frame);
          images.get(frame).then(
            (url) => {
              img.src = url;
            },
            () => {
              img.alt = `Frame ${frame} (not available)`;
            },
          );
        }
        return fig;
      });
      container.replaceChildren(...figures);
      const keep = new Set(frames);
      if (typeof viewing === "number") keep.add(viewing);
      images.keep(keep);
    }

    // ---- timeline
    const timelineReadout = document.getElementById("timeline-readout");
    const timeline = new Timeline(document.getElementById("timeline"), (batch) => {
      if (!batch) {
        setText(timelineReadout, "A lane per node, a bar per batch.");
        return;
      }
      const end = typeof batch.finished === "number" ? batch.finished : Date.now() / 1000;
      const parts = [
        `Frames ${batch.frames}`,
        nodeLabel(batch.node, job && job.nodes),
        batch.state,
        duration(end - batch.started),
      ];
      if (num(batch.attempts) > 1) parts.push(`attempt ${batch.attempts}`);
      setText(timelineReadout, parts.join(" · "));
    });

    function renderTimeline() {
      const batches = (Array.isArray(job.batches) ? job.batches : []).filter(
        (b) => b && b.node && typeof b.started === "number",
      );
      const empty = batches.length === 0;
      document.getElementById("timeline-empty").hidden = !empty;
      document.getElementById("timeline").hidden = empty;
      if (empty) return;
      const urls = new Set(batches.map((b) => b.node));
      const lanes = [...urls]
        .map((url) => {
          const info = job.nodes && job.nodes[url];
          const lost = info && info.state === "lost";
          return { url, label: nodeLabel(url, job.nodes) + (lost ? " (lost)" : "") };
        })
        .sort((a, b) => a.label.localeCompare(b.label));
      const now = Date.now() / 1000;
      let start = Math.min(...batches.map((b) => b.started));
      if (typeof job.started === "number") start = Math.min(start, job.started);
      let end = Math.max(...batches.map((b) => (typeof b.finished === "number" ? b.finished : now)));
      if (typeof job.finished === "number") end = Math.max(end, job.finished);
      else if (isActive(job.state)) end = Math.max(end, now);
      timeline.draw({ lanes, batches, start, end, now: Math.max(now, end) });
    }

    // ---- failed frames
    function renderFailed() {
      const failed = (Array.isArray(job.failed_frames) ? job.failed_frames : []).filter((f) => f && typeof f === "object");
      document.getElementById("failed-panel").hidden = failed.length === 0;
      const shown = failed.slice(0, 200);
      syncRows(
        document.querySelector("#failed tbody"),
        shown,
        (f) => f.frame,
        () => el("tr", {}, [el("td", { class: "num" }), el("td")]),
        (row, f) => {
          setText(row.cells[0], f.frame);
          const children = [];
          if (f.node) children.push(el("div", { class: "node", text: `on ${nodeLabel(f.node, job.nodes)}` }));
          children.push(el("pre", { text: f.error || "(no error message)" }));
          row.cells[1].replaceChildren(...children);
        },
      );
      const more = document.getElementById("failed-more");
      more.hidden = failed.length <= shown.length;
      setText(more, `…and ${failed.length - shown.length} more failed frames.`);
    }

    async function refreshDetail() {
      try {
        job = await api(base);
      } catch (error) {
        if (error instanceof HttpError && error.status === 404) {
          setText("job-scene", `No job ${jobId} on this farm`);
          badge(document.getElementById("job-state"), "unknown");
        }
        throw error;
      }
      renderHeader();
      renderTimeline();
      renderFailed();
      renderThumbs();
    }

    detailPoll = poller(refreshDetail, 2000);
    mapPoll = poller(refreshMap, POLL_MS);
    return {
      now() {
        detailPoll.now();
        mapPoll.now();
      },
    };
  }

  // ---------------------------------------------------------------- start

  function start() {
    captureToken();
    const page = document.body.dataset.page;
    let current = null;
    setupToken(() => current && current.now());
    if (page === "overview") current = overviewPage();
    else if (page === "job") current = jobPage(document.body.dataset.jobId);
    setInterval(renderLive, 1000);
  }

  start();
})();
