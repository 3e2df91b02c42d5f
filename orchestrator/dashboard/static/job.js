// The job page: header, frame grid, latest thumbnails, timeline, failed frames, frame/video viewer.
import {
  POLL_MS,
  THUMBS,
  STATE_NAMES,
  HttpError,
  api,
  blobUrl,
  poller,
  el,
  setText,
  num,
  listOf,
  duration,
  clock,
  elapsedOf,
  frameCounts,
  progressOf,
  percent,
  isActive,
  setBar,
  count,
  badge,
  nodeLabel,
  parseSpec,
  syncRows,
  cancelJob,
  requeueJob,
} from "./farm.js";
import { FrameMap, FrameGrid, Timeline } from "./canvas.js";

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

export function jobPage(jobId) {
  const base = `/render/${encodeURIComponent(jobId)}`;
  const images = new Images(jobId);
  let job = null;
  let map = null;
  let framemapMissing = false;
  let shownThumbs = [];
  let videoUrl = null;
  let poll = null;

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
  const requeueButton = document.getElementById("job-requeue");
  requeueButton.addEventListener("click", async () => {
    requeueButton.disabled = true;
    const label = job && job.scene ? `${job.scene_name || job.scene} (${jobId})` : jobId;
    if (await requeueJob(jobId, label)) poll.now();
    requeueButton.disabled = false;
  });
  const cancelButton = document.getElementById("job-cancel");
  cancelButton.addEventListener("click", async () => {
    cancelButton.disabled = true;
    if (await cancelJob(jobId, job && job.scene ? `${job.scene_name || job.scene} (${jobId})` : jobId)) {
      poll.now();
    }
    cancelButton.disabled = false;
  });

  function renderHeader() {
    const counts = frameCounts(job);
    const progress = progressOf(job);
    setText("job-scene", job.scene ? String(job.scene_name || job.scene) : `Job ${jobId}`);
    document.title = `${percent(progress)} · ${job.scene_name || job.scene || jobId} · Render farm`;
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
    requeueButton.hidden = isActive(job.state);
    const requeues = Array.isArray(job.requeues) ? job.requeues : [];
    const last = requeues[requeues.length - 1];
    document.getElementById("job-requeues").hidden = !last;
    if (last) {
      setText("job-requeues", `Requeued ${requeues.length === 1 ? "once" : `${requeues.length} times`}; ` +
        `last at ${clock(last.at)}: frames ${last.frames} (${count(last.count)}).`);
    }
    document.getElementById("job-video").hidden = !job.video;
    // The failed-frames table says it better, unless the job as a whole failed.
    const failures = Array.isArray(job.failed_frames) && job.failed_frames.length > 0;
    const message = job.error && (job.state === "failed" || !failures) ? String(job.error) : "";
    const error = document.getElementById("job-error");
    error.hidden = !message;
    setText(error, message);
    // A job no node can take now says why (the tags it asks for), rather than sit silent.
    const waiting = document.getElementById("job-waiting");
    waiting.hidden = !job.waiting;
    setText(waiting, job.waiting ? String(job.waiting) : "");
    const versions = Array.isArray(job.blender_versions) ? job.blender_versions : [];
    const mixed = document.getElementById("job-mixed");
    mixed.hidden = !(job.mixed_blender_versions || versions.length > 1);
    setText(mixed, `Nodes with different Blender versions rendered this job (${versions.join(", ")}): frames may differ. ` +
      "To render with one, submit with blender_version (farm render --blender-version).");
    // A split frame's pieces: regions of a grid, or parts of its samples.
    const split = job.tiles
      ? `${job.tiles.grid[0]} × ${job.tiles.grid[1]} regions: ${count(job.tiles.done)} of ${count(job.tiles.total)} in`
      : job.samples
        ? `${job.samples.per_frame} parts of ${count(job.samples.samples)} samples: ` +
          `${count(job.samples.done)} of ${count(job.samples.total)} in`
        : "";
    document.getElementById("job-split-row").hidden = !split;
    setText("job-split", split);
    // A video job: the render job whose frames it encodes, on the orchestrator.
    const source = document.getElementById("job-source");
    document.getElementById("job-source-row").hidden = job.kind !== "video";
    if (job.kind === "video") {
      source.setAttribute("href", `/jobs/${encodeURIComponent(job.source)}`);
      setText(source, `job ${job.source}: frames ${job.frames_spec} at ${job.fps} fps`);
    }
    const assets = job.assets || null;
    document.getElementById("job-assets-row").hidden = !assets || !assets.files;
    if (assets) setText("job-assets", `${assets.files} files, ${bytes(assets.bytes)}`);
    const warnings = assets && Array.isArray(assets.warnings) ? assets.warnings : [];
    const list = document.getElementById("job-asset-warnings");
    list.hidden = warnings.length === 0;
    list.replaceChildren(...warnings.map((w) => el("li", { text: String(w) })));
  }

  function bytes(n) {
    const value = Number(n) || 0;
    if (value >= 1e9) return `${(value / 1e9).toFixed(1)} GB`;
    if (value >= 1e6) return `${(value / 1e6).toFixed(1)} MB`;
    return `${Math.round(value / 1e3)} kB`;
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

  async function fetchMap() {
    if (!framemapMissing) {
      try {
        return new FrameMap(await api(`${base}/framemap`));
      } catch (error) {
        if (!(error instanceof HttpError && error.status === 404)) throw error;
        framemapMissing = true; // an orchestrator without the compact endpoint
      }
    }
    return FrameMap.fromFrames(listOf(await api(`${base}/frames`), "frames"));
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

  // ---- a tiled job's frame, region by region: each region's image as it is collected, then
  // the stitched frame in their place
  const tileUrls = new Map(); // "frame/tile" -> Promise<objectURL>
  let tilesShown = "";

  function tileFrame() {
    if (!map) return null;
    let lastDone = null;
    for (let i = 0; i < map.length; i++) {
      if (map.states[i] === "r") return map.frameAt(i);
      if (map.states[i] === "d" || map.states[i] === "f") lastDone = map.frameAt(i);
    }
    return lastDone ?? (map.length ? map.frameAt(0) : null);
  }

  function tileImage(frame, tile) {
    const key = `${frame}/${tile}`;
    if (!tileUrls.has(key)) {
      const promise = blobUrl(`${base}/frames/${encodeURIComponent(frame)}/tiles/${tile}`);
      promise.catch(() => tileUrls.delete(key));
      tileUrls.set(key, promise);
    }
    return tileUrls.get(key);
  }

  function dropTileImages(frame) {
    for (const [key, promise] of tileUrls) {
      if (!key.startsWith(`${frame}/`)) {
        tileUrls.delete(key);
        promise.then((url) => URL.revokeObjectURL(url), () => {});
      }
    }
  }

  async function renderTiles() {
    const panel = document.getElementById("tiles-panel");
    panel.hidden = !job.tiles;
    const frame = job.tiles ? tileFrame() : null;
    if (frame === null) return;
    const info = await api(`${base}/frames/${encodeURIComponent(frame)}/tiles`);
    const tiles = listOf(info, "tiles");
    const done = tiles.filter((t) => t.state === "done").length;
    setText("tiles-title", `Frame ${frame}: ${done} of ${tiles.length} regions`);
    setText("tiles-readout", info.state === "done" ? "Stitched." : `${info.cols} × ${info.rows} regions`);
    const key = `${frame}:${info.state}:${tiles.map((t) => t.state[0]).join("")}`;
    if (key === tilesShown) return;
    tilesShown = key;
    dropTileImages(frame);
    const box = document.getElementById("tiles");
    box.style.gridTemplateColumns = `repeat(${info.cols}, 1fr)`;
    box.style.gridTemplateRows = `repeat(${info.rows}, 1fr)`;
    box.style.aspectRatio = info.width && info.height ? `${info.width} / ${info.height}` : "4 / 3";
    if (info.state === "done") {
      const img = el("img", { class: "whole", alt: `Frame ${frame}, stitched` });
      images.get(frame).then((url) => {
        img.src = url;
      }, () => {});
      box.replaceChildren(img);
      return;
    }
    const cells = tiles.map((t) => {
      const cell = el("div", { class: `tile ${t.state[0]}`, title: `Region ${t.tile} · ${t.state}` });
      cell.dataset.tile = String(t.tile);
      if (t.state === "done") {
        const img = el("img", { alt: `Region ${t.tile}` });
        cell.append(img);
        tileImage(frame, t.tile).then((url) => {
          img.src = url;
        }, () => {});
      }
      return cell;
    });
    box.replaceChildren(...cells);
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
      batch.tile == null ? `Frames ${batch.frames}` : `Frames ${batch.frames}, region ${batch.tile}`,
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
    const placeholder = document.getElementById("timeline-empty");
    placeholder.hidden = !empty;
    const started = (job.batches || []).some((b) => b && (b.state === "running" || b.state === "done"));
    setText(
      placeholder,
      started ? "The orchestrator reports no batch start and finish times yet." : "No batch has started yet.",
    );
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
      (f) => (f.tile == null ? f.frame : `${f.frame}/${f.tile}`),
      () => el("tr", {}, [el("td", { class: "num" }), el("td")]),
      (row, f) => {
        setText(row.cells[0], f.tile == null ? f.frame : `${f.frame} (region ${f.tile})`);
        const children = [];
        const nodes = Array.isArray(f.nodes) ? f.nodes : f.node ? [f.node] : [];
        if (nodes.length) {
          const names = nodes.map((url) => nodeLabel(url, job.nodes)).join(", ");
          children.push(el("div", { class: "node", text: `failed on ${names}` }));
        }
        children.push(el("pre", { text: f.error || "(no error message)" }));
        row.cells[1].replaceChildren(...children);
      },
    );
    // The orchestrator may list only the first failures; the counter has them all.
    const total = Math.max(failed.length, frameCounts(job).failed);
    const more = document.getElementById("failed-more");
    more.hidden = total <= shown.length;
    setText(more, `…and ${count(total - shown.length)} more failed frames.`);
  }

  // Status and frame map in one tick, so the header, the grid and the lists agree.
  async function refresh() {
    const [detail, frames] = await Promise.allSettled([api(base), fetchMap()]);
    if (detail.status === "rejected") {
      const error = detail.reason;
      if (error instanceof HttpError && error.status === 404) {
        setText("job-scene", `No job ${jobId} on this farm`);
        badge(document.getElementById("job-state"), "unknown");
      }
      throw error;
    }
    job = detail.value;
    renderHeader();
    renderTimeline();
    renderFailed();
    if (frames.status === "rejected") throw frames.reason;
    map = frames.value;
    renderMap();
    renderThumbs();
    await renderTiles();
  }

  poll = poller(refresh, POLL_MS);
  return poll;
}
