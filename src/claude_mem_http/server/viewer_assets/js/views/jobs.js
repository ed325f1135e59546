// Jobs: the project's generation jobs, failed ones with their error, and retry and cancel
// buttons for keys allowed to use them.

import { ApiError, get, post, query } from "../api.js";
import { el, shortId, showError, timeElement } from "../dom.js";

const PAGE = 50;
// Auth runs before a route looks at anything else, so this call to a job id that cannot
// exist answers 403 when the key may not retry jobs, and 404 when it may; it changes
// nothing either way.
const PROBE_JOB = "00000000-0000-0000-0000-000000000000";

const $ = (id) => document.getElementById(id);
let currentProject = () => null;
let canOperate = true;
let generation = 0;
const jobs = new Map();

export async function learnScopes() {
  try {
    await post(`/v1/jobs/${PROBE_JOB}/retry`);
    canOperate = true;
  } catch (exc) {
    canOperate = !(exc instanceof ApiError && (exc.status === 403 || exc.status === 401));
  }
  $("jobs-scope").textContent = canOperate
    ? ""
    : "This key may look at jobs but not retry or cancel them (it needs memories:write or jobs:write).";
}

function errorText(job) {
  const error = job.lastError;
  if (!error) return "";
  const reason = typeof error.reason === "string" ? error.reason : JSON.stringify(error);
  return error.classification ? `${reason} (${error.classification})` : reason;
}

function actionButtons(job) {
  if (!canOperate) return [];
  const buttons = [];
  if (job.status === "failed" || job.status === "cancelled") {
    buttons.push(
      el("button", { type: "button", className: "retry", onclick: () => act(job, "retry") }, "Retry"),
    );
  }
  if (job.status === "queued" || job.status === "processing" || job.status === "failed") {
    buttons.push(
      el("button", { type: "button", className: "cancel", onclick: () => act(job, "cancel") }, "Cancel"),
    );
  }
  for (const button of buttons) {
    button.setAttribute("aria-label", `${button.textContent} job ${shortId(job.id)}`);
  }
  return buttons;
}

function row(job) {
  return el(
    "tr",
    { dataset: { id: job.id, status: job.status } },
    el("td", {}, el("span", { className: `status status-${job.status}` }, job.status)),
    el("td", {}, `${job.sourceType} ${shortId(job.sourceId)}`),
    el("td", {}, `${job.attempts}/${job.maxAttempts}`),
    el("td", {}, timeElement(job.createdAtEpoch)),
    el("td", { className: "job-error" }, errorText(job)),
    el("td", { className: "actions" }, actionButtons(job)),
  );
}

function render() {
  // Rows are rebuilt on every change; keep the keyboard focus on the same button.
  const focused = document.activeElement;
  const focusRow = focused?.closest?.("#jobs-body tr")?.dataset.id;
  const focusClass = focused?.className;
  const filter = $("jobs-status").value;
  const shown = [...jobs.values()]
    .filter((job) => !filter || job.status === filter)
    .sort((a, b) => b.createdAtEpoch - a.createdAtEpoch);
  $("jobs-body").replaceChildren(...shown.map(row));
  if (!shown.length) {
    $("jobs-body").append(el("tr", {}, el("td", { colspan: "6", className: "empty" }, "No jobs.")));
  }
  if (focusRow) {
    const again = [...$("jobs-body").rows].find((r) => r.dataset.id === focusRow);
    const target = again?.querySelector(`button.${focusClass}`) || again?.querySelector("button");
    if (target) target.focus();
  }
}

async function act(job, action) {
  showError($("jobs-error"), "");
  const status = $("jobs-status-line");
  status.textContent = action === "retry" ? "Retrying…" : "Cancelling…";
  try {
    const body = await post(`/v1/jobs/${encodeURIComponent(job.id)}/${action}`);
    const updated = body.generationJob;
    jobs.set(updated.id, { ...jobs.get(updated.id), ...updated });
    status.textContent =
      action === "retry"
        ? `Job ${shortId(job.id)} queued again (retry ${body.retriedCount}).`
        : `Job ${shortId(job.id)} cancelled.`;
    render();
  } catch (exc) {
    status.textContent = "";
    showError($("jobs-error"), exc.describe());
    if (exc.status === 403) {
      canOperate = false;
      render();
    }
  }
}

async function load() {
  const projectId = currentProject();
  if (!projectId) return;
  const mine = ++generation;
  showError($("jobs-error"), "");
  try {
    const status = $("jobs-status").value;
    const path = `/v1/projects/${encodeURIComponent(projectId)}/jobs${query({ status, limit: PAGE })}`;
    const body = await get(path);
    if (mine !== generation) return;
    jobs.clear();
    for (const job of body.jobs) jobs.set(job.id, job);
    const n = body.jobs.length;
    $("jobs-status-line").textContent = `${n} of ${body.total} job${body.total === 1 ? "" : "s"}.`;
    render();
  } catch (exc) {
    if (mine === generation) showError($("jobs-error"), exc.describe());
  }
}

export function init(project) {
  currentProject = project;
  $("jobs-form").addEventListener("submit", (event) => {
    event.preventDefault();
    load();
  });
  $("jobs-status").addEventListener("change", load);
}

export function reset() {
  generation++;
  jobs.clear();
  $("jobs-body").replaceChildren();
  $("jobs-status-line").textContent = "";
  showError($("jobs-error"), "");
}

export function onShow() {
  load();
}

export function onLive(kind, item) {
  if (kind !== "job") return;
  const known = jobs.get(item.id);
  jobs.set(item.id, known ? { ...known, ...item } : item);
  if (!$("view-jobs").hidden) render();
}
