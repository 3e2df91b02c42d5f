// Render farm dashboard: polls the orchestrator's JSON API and draws the pages. Plain JS (ES
// modules), no build step. Each page's shell names itself in <body data-page>.
import { api, captureToken, renderLive, setupToken } from "./farm.js";
import { jobPage } from "./job.js";
import { overviewPage } from "./overview.js";

// Who the page's token is: its name in the top bar, and its role on <body data-role>, which
// hides the buttons it may not use (style.css: .writes for view, .admin-only for all but admin).
async function showWho() {
  const who = document.getElementById("whoami");
  try {
    const me = await api("/whoami");
    who.textContent = `${me.name} · ${me.role}`;
    who.hidden = false;
    document.body.dataset.role = me.role;
  } catch {
    who.hidden = true;
    delete document.body.dataset.role;
  }
}

function start() {
  captureToken();
  const page = document.body.dataset.page;
  let current = null;
  setupToken(() => {
    showWho();
    if (current) current.now();
  });
  showWho();
  if (page === "overview") current = overviewPage();
  else if (page === "job") current = jobPage(document.body.dataset.jobId);
  setInterval(renderLive, 1000);
}

start();
