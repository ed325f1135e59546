// Stats: events and observations per day, and the tokens generation spent, counted from
// what the API returns (and saying which window that is).

import { get, query } from "../api.js";
import { dayOf, el, showError } from "../dom.js";

const JOB_PAGE = 200;
const JOB_PAGES = 5;
const RECENT = 100;

const $ = (id) => document.getElementById(id);
let currentProject = () => null;
let generation = 0;

async function projectJobs(projectId) {
  const found = [];
  for (let page = 0; page < JOB_PAGES; page++) {
    const path = `/v1/projects/${encodeURIComponent(projectId)}/jobs${query({ limit: JOB_PAGE, offset: page * JOB_PAGE })}`;
    const body = await get(path);
    found.push(...body.jobs);
    if (found.length >= body.total || !body.jobs.length) return { jobs: found, total: body.total };
  }
  return { jobs: found, total: null };
}

function perDay(items, epochOf) {
  const counts = new Map();
  for (const item of items) {
    const day = dayOf(epochOf(item));
    counts.set(day, (counts.get(day) || 0) + 1);
  }
  return [...counts.entries()].sort((a, b) => (a[0] < b[0] ? 1 : -1));
}

function dayTable(caption, rows, unit) {
  const top = Math.max(1, ...rows.map(([, n]) => n));
  return el(
    "table",
    { className: "stats-table" },
    el("caption", {}, caption),
    el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Day"), el("th", { scope: "col" }, unit), el("th", { scope: "col" }, el("span", { className: "visually-hidden" }, "Bar")))),
    el(
      "tbody",
      {},
      rows.length
        ? rows.map(([day, n]) => {
            const bar = el("span", { className: "bar" });
            bar.style.width = `${Math.round((n / top) * 100)}%`; // CSSOM, not an inline style attribute
            return el("tr", {}, el("th", { scope: "row" }, day), el("td", { className: "num" }, String(n)), el("td", { className: "bar-cell", "aria-hidden": "true" }, bar));
          })
        : el("tr", {}, el("td", { colspan: "3", className: "empty" }, "Nothing yet.")),
    ),
  );
}

// Each generation writes its token usage on every observation it made; count it once,
// on the first of them (parsedObservationIndex 0).
function tokenUsage(observations) {
  const total = { input: 0, output: 0, generations: 0 };
  for (const o of observations) {
    const meta = o.metadata || {};
    const usage = meta.usage;
    if (!usage || (meta.parsedObservationIndex ?? 0) !== 0) continue;
    total.input += Number(usage.inputTokens) || 0;
    total.output += Number(usage.outputTokens) || 0;
    total.generations += 1;
  }
  return total;
}

async function load() {
  const projectId = currentProject();
  if (!projectId) return;
  const mine = ++generation;
  showError($("stats-error"), "");
  try {
    const [{ jobs, total }, recent] = await Promise.all([
      projectJobs(projectId),
      get(`/v1/memories/recent${query({ projectId, limit: RECENT })}`),
    ]);
    if (mine !== generation) return;
    const eventJobs = jobs.filter((j) => j.sourceType === "agent_event");
    const observations = recent.memories;
    const tokens = tokenUsage(observations);
    const failed = jobs.filter((j) => j.status === "failed").length;
    const scope = total === null ? `the latest ${jobs.length} jobs` : `all ${jobs.length} jobs`;
    $("stats").replaceChildren(
      el(
        "dl",
        { className: "totals" },
        el("div", {}, el("dt", {}, "Events (with a generation job)"), el("dd", {}, String(eventJobs.length))),
        el("div", {}, el("dt", {}, "Failed jobs"), el("dd", {}, String(failed))),
        el("div", {}, el("dt", {}, "Input tokens"), el("dd", {}, tokens.input.toLocaleString())),
        el("div", {}, el("dt", {}, "Output tokens"), el("dd", {}, tokens.output.toLocaleString())),
      ),
      el(
        "p",
        { className: "hint" },
        `Events per day are counted from ${scope} of the project (an event sent without generation has no job and is not counted). ` +
          `Observations per day and tokens come from the latest ${observations.length} observations; ` +
          `tokens are what the ${tokens.generations} generation${tokens.generations === 1 ? "" : "s"} behind them reported (the offline provider calls no model and reports none).`,
      ),
      dayTable("Events per day", perDay(eventJobs, (j) => j.createdAtEpoch), "Events"),
      dayTable("Observations per day", perDay(observations, (o) => o.createdAtEpoch), "Observations"),
    );
  } catch (exc) {
    if (mine === generation) showError($("stats-error"), exc.describe());
  }
}

export function init(project) {
  currentProject = project;
}

export function reset() {
  generation++;
  $("stats").replaceChildren();
  showError($("stats-error"), "");
}

export function onShow() {
  load();
}
