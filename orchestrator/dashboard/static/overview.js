// The overview page: jobs (progress, ETA, cancel) and nodes, polled from /render and /nodes.
import {
  POLL_MS,
  api,
  poller,
  el,
  setText,
  num,
  listOf,
  duration,
  ago,
  elapsedOf,
  frameCounts,
  progressOf,
  percent,
  isActive,
  progressBar,
  setBar,
  count,
  badge,
  nodeLabel,
  syncRows,
  cancelJob,
} from "./farm.js";

// ---------------------------------------------------------------- overview page

const STATE_ORDER = { running: 0, queued: 1 };
const MAX_FINISHED = 50;

export function overviewPage() {
  const jobsBody = document.querySelector("#jobs tbody");
  const nodesBody = document.querySelector("#nodes tbody");
  let poll = null;

  // ---- many jobs: filter by state, search by scene or id, act on a selection
  const selected = new Set();
  const search = document.getElementById("jobs-search");
  const stateFilter = document.getElementById("jobs-state");
  const selectAll = document.getElementById("jobs-all");
  let lastJobs = [];
  search.addEventListener("input", () => poll.now());
  stateFilter.addEventListener("change", () => poll.now());

  function matches(job) {
    const wanted = search.value.trim().toLowerCase();
    const text = `${job.scene_name || job.scene || ""} ${job.id}`.toLowerCase();
    return (!stateFilter.value || job.state === stateFilter.value) && (!wanted || text.includes(wanted));
  }

  function renderSelection() {
    const bulk = document.getElementById("jobs-bulk");
    bulk.hidden = selected.size === 0;
    setText("jobs-selected", `${count(selected.size)} selected`);
    for (const row of jobsBody.rows) row.querySelector("input.pick").checked = selected.has(row.dataset.key);
  }

  selectAll.addEventListener("change", () => {
    for (const row of jobsBody.rows) {
      if (selectAll.checked) selected.add(row.dataset.key);
      else selected.delete(row.dataset.key);
    }
    renderSelection();
  });

  // Each selected job that the action applies to, one request each; what failed is listed.
  async function bulk(action) {
    const jobs = lastJobs.filter((j) => selected.has(j.id));
    const applies = {
      cancel: (j) => isActive(j.state),
      requeue: (j) => !isActive(j.state),
      delete: (j) => !isActive(j.state),
    }[action];
    const chosen = jobs.filter(applies);
    if (!chosen.length) {
      window.alert(`None of the selected jobs can be ${action === "cancel" ? "cancelled" : action + "d"} now.`);
      return;
    }
    if (action === "delete" && !window.confirm(
      `Delete ${chosen.length} job${chosen.length > 1 ? "s" : ""} and ${chosen.length > 1 ? "their" : "its"} frames from the farm for good?`)) return;
    const failed = [];
    for (const job of chosen) {
      const id = encodeURIComponent(job.id);
      try {
        if (action === "cancel") await api(`/render/${id}`, { method: "DELETE" });
        if (action === "delete") await api(`/render/${id}/delete`, { method: "POST" });
        if (action === "requeue") {
          await api(`/render/${id}/requeue`, {
            method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ failed: true }),
          });
        }
        if (action === "delete") selected.delete(job.id);
      } catch (error) {
        failed.push(`${job.id}: ${error.message}`);
      }
    }
    if (failed.length) window.alert(`Some jobs were left as they were:\n${failed.join("\n")}`);
    poll.now();
  }
  document.getElementById("bulk-cancel").addEventListener("click", () => bulk("cancel"));
  document.getElementById("bulk-requeue").addEventListener("click", () => bulk("requeue"));
  document.getElementById("bulk-delete").addEventListener("click", () => bulk("delete"));

  function createJobRow() {
    const link = el("a", { class: "scene" });
    const id = el("span", { class: "sub mono" });
    const pick = el("input", { class: "pick", type: "checkbox" });
    const cancel = el("button", { class: "btn btn-small btn-danger writes", type: "button", text: "Cancel" });
    const row = el("tr", {}, [
      el("td", {}, [pick]),
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
    pick.addEventListener("change", () => {
      if (pick.checked) selected.add(row.dataset.key);
      else selected.delete(row.dataset.key);
      renderSelection();
    });
    return row;
  }

  function updateJobRow(row, job) {
    const cells = [...row.cells].slice(1); // after the selection box
    const counts = frameCounts(job);
    const progress = progressOf(job);
    const scene = job.scene ? String(job.scene_name || job.scene) : "(scene)";
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

  // current_batch may be an id, a {job, frames} object, or absent; current_batches a list.
  function batchText(node) {
    const describe = (batch) => {
      if (batch && typeof batch === "object") {
        return [batch.job || batch.job_id, batch.frames].filter(Boolean).join(" · ") || "busy";
      }
      return batch === undefined || batch === null || batch === "" ? "" : String(batch);
    };
    const list = Array.isArray(node.current_batches) ? node.current_batches : [node.current_batch];
    return list.map(describe).filter(Boolean).join(", ") || "–";
  }

  // Drain (finish, take no more), pause (stop now, batches back to the queue), resume.
  async function nodeAction(url, action) {
    try {
      await api(`/nodes/${action}`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ url }),
      });
      poll.now();
    } catch (error) {
      window.alert(`Could not ${action} ${url}: ${error.message}`);
    }
  }

  function createNodeRow() {
    const buttons = ["drain", "pause", "resume"].map((action) => {
      const button = el("button", { class: "btn btn-small admin-only", type: "button", text: action[0].toUpperCase() + action.slice(1) });
      button.dataset.action = action;
      button.addEventListener("click", async () => {
        button.disabled = true;
        await nodeAction(button.closest("tr").dataset.key, action);
        button.disabled = false;
      });
      return button;
    });
    return el("tr", {}, [
      el("td", {}, [el("span", { class: "name" }), el("span", { class: "sub mono" })]),
      el("td", {}, [el("span", { class: "badge" })]),
      el("td"),
      el("td", { class: "mono" }),
      el("td", { class: "num" }),
      el("td", {}, [el("span", { class: "name" }), el("span", { class: "sub" })]),
      el("td", { class: "num" }),
      el("td", { class: "num actions" }, buttons),
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
    setText(cells[3], batchText(node));
    setText(cells[4], num(node.frames_rendered));
    // A node whose Blender runs without a sandbox stands out (README: Security).
    const open = node.sandbox === "none";
    const engine = node.engine === "bpy" ? " (bpy)" : "";
    const devices = [...new Set(node.devices || [])].join(" · ");
    setText(cells[5].firstChild, (node.blender_version || "–") + engine + (open ? " · no sandbox" : ""));
    const tags = Array.isArray(node.tags) && node.tags.length ? `tags: ${node.tags.join(", ")}` : "";
    setText(cells[5].lastChild, [devices, tags].filter(Boolean).join(" · "));
    cells[5].classList.toggle("warn", open);
    cells[5].title = node.sandbox ? `Blender's sandbox: ${node.sandbox}` : "";
    setText(cells[6], ago(node.last_seen));
    const held = node.state === "draining" || node.state === "paused";
    for (const button of cells[7].children) {
      button.hidden = button.dataset.action === "resume" ? !held : held || node.state === "lost";
    }
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
    lastJobs = jobs;
    const matching = [...active, ...finished].filter(matches);
    const shown = [...matching.filter((j) => isActive(j.state)),
      ...matching.filter((j) => !isActive(j.state)).slice(0, MAX_FINISHED)];
    syncRows(jobsBody, shown, (j) => j.id, createJobRow, updateJobRow);
    for (const id of [...selected]) if (!jobs.some((j) => j.id === id)) selected.delete(id);
    renderSelection();
    const older = document.getElementById("jobs-older");
    older.hidden = shown.length === matching.length;
    setText(older, `…and ${count(matching.length - shown.length)} older finished jobs.`);
    document.getElementById("jobs-none-match").hidden = !(jobs.length && !matching.length);
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
