// The job page's canvases: the frame map model, the frame grid (cheap at 100,000 frames) and
// the per-node timeline. Drawing only; data comes from job.js.
import { COLORS, BATCH_COLORS, num, timecode } from "./farm.js";

// ---------------------------------------------------------------- job page: frame grid

export class FrameMap {
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
export class FrameGrid {
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

export class Timeline {
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
