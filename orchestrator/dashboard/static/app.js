// Render farm dashboard: polls the orchestrator's JSON API and draws the pages. Plain JS (ES
// modules), no build step. Each page's shell names itself in <body data-page>.
import { captureToken, renderLive, setupToken } from "./farm.js";
import { jobPage } from "./job.js";
import { overviewPage } from "./overview.js";

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
