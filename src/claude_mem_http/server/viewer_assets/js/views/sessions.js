// Sessions: a session's timeline (prompts, tool uses, the observations made from each, and
// the summary), assembled from the routes there are: the project's jobs name its events
// and summarised sessions, the latest observations name sessions too, each event is read
// by id, and each event's observations by its id.

import { get, mapLimited, query } from "../api.js";
import { el, observationItem, shortId, showError, timeElement } from "../dom.js";

const JOB_PAGE = 200;
const RECENT = 100;
const PARALLEL = 6;
const CLIP = 2000;
const PROMPT_TYPES = new Set(["user_prompt", "userpromptsubmit", "prompt", "user_prompt_submit"]);
const ANSWER_TYPES = new Set(["assistant_message", "stop", "last_assistant_message"]);

const $ = (id) => document.getElementById(id);
let currentProject = () => null;
let generation = 0;
let loaded = false;
let picked = null;
let refreshTimer = null;
const events = new Map(); // event id -> event (events never change)
const eventIds = new Set(); // events of this project known from jobs or the stream
const sessions = new Map(); // session id -> session, or null while unread
const summaries = new Map(); // session id -> summary observations

function clip(text) {
  const value = typeof text === "string" ? text : JSON.stringify(text, null, 2);
  if (value === undefined) return "";
  return value.length > CLIP ? `${value.slice(0, CLIP)}\n… (${value.length - CLIP} more characters)` : value;
}

function describeEvent(event) {
  const type = String(event.eventType || "").toLowerCase();
  const payload = event.payload && typeof event.payload === "object" ? event.payload : {};
  const tool = payload.tool_name || payload.toolName;
  if (PROMPT_TYPES.has(type)) return { label: "Prompt", kind: "prompt", parts: [["", payload.prompt ?? payload]] };
  if (tool) {
    const parts = [["Input", payload.tool_input ?? payload.toolInput]];
    const output = payload.tool_response ?? payload.toolResponse ?? payload.tool_output;
    if (output !== undefined) parts.push(["Output", output]);
    return { label: `Tool use: ${tool}`, kind: "tool", parts };
  }
  if (ANSWER_TYPES.has(type)) {
    return { label: "Answer", kind: "answer", parts: [["", payload.last_assistant_message ?? payload]] };
  }
  return { label: event.eventType, kind: "other", parts: [["Payload", event.payload]] };
}

function eventEntry(event, observations) {
  const { label, kind, parts } = describeEvent(event);
  return el(
    "li",
    { className: `step step-${kind}`, dataset: { id: event.id } },
    el("div", { className: "item-head" }, el("h4", { className: "item-title" }, label), timeElement(event.occurredAtEpoch)),
    parts
      .filter(([, value]) => value !== undefined && value !== null)
      .map(([name, value]) =>
        el("div", { className: "part" }, name ? el("span", { className: "part-name" }, name) : null, el("pre", {}, clip(value))),
      ),
    observations.length
      ? el("ol", { className: "items nested", "aria-label": `Observations from ${label}` }, observations.map((o) => observationItem(o)))
      : el("p", { className: "hint" }, "No observation from this step (yet)."),
  );
}

async function eventById(id) {
  if (!events.has(id)) {
    try {
      events.set(id, await get(`/v1/events/${encodeURIComponent(id)}`).then((b) => b.event));
    } catch (exc) {
      if (exc.status === 404) return null; // erased since
      throw exc;
    }
  }
  return events.get(id);
}

async function discover(projectId) {
  const [jobs, recent, summaryList] = await Promise.all([
    get(`/v1/projects/${encodeURIComponent(projectId)}/jobs${query({ limit: JOB_PAGE })}`),
    get(`/v1/memories/recent${query({ projectId, limit: RECENT })}`),
    get(`/v1/memories/recent${query({ projectId, limit: RECENT, kind: "summary" })}`),
  ]);
  for (const job of jobs.jobs) {
    if (job.sourceType === "agent_event") eventIds.add(job.sourceId);
    if (job.sourceType === "session_summary" && !sessions.has(job.sourceId)) sessions.set(job.sourceId, null);
  }
  for (const o of recent.memories) {
    if (o.serverSessionId && !sessions.has(o.serverSessionId)) sessions.set(o.serverSessionId, null);
  }
  for (const o of summaryList.memories) addSummary(o);
}

function addSummary(observation) {
  const id = observation.serverSessionId;
  if (!id) return;
  const known = summaries.get(id) || [];
  if (!known.some((o) => o.id === observation.id)) known.push(observation);
  summaries.set(id, known);
  if (!sessions.has(id)) sessions.set(id, null);
}

async function readSessions() {
  const unread = [...sessions.entries()].filter(([, s]) => s === null).map(([id]) => id);
  await mapLimited(unread, PARALLEL, async (id) => {
    try {
      sessions.set(id, (await get(`/v1/sessions/${encodeURIComponent(id)}`)).session);
    } catch (exc) {
      if (exc.status === 404) sessions.delete(id);
      else throw exc;
    }
  });
}

function sessionLabel(session) {
  const who = [session.platformSource, session.agentType].filter(Boolean).join(" · ");
  return `${shortId(session.id)}${who ? ` · ${who}` : ""}${session.endedAtEpoch ? " · ended" : ""}`;
}

function renderList() {
  const list = $("session-list");
  const known = [...sessions.values()].filter(Boolean).sort((a, b) => b.startedAtEpoch - a.startedAtEpoch);
  list.replaceChildren(
    ...known.map((session) =>
      el(
        "li",
        {},
        el(
          "button",
          {
            type: "button",
            className: "session-button",
            dataset: { id: session.id },
            "aria-pressed": String(session.id === picked),
            onclick: () => pick(session.id),
          },
          el("span", { className: "session-name" }, sessionLabel(session)),
          timeElement(session.startedAtEpoch),
        ),
      ),
    ),
  );
  if (!known.length) list.append(el("li", { className: "empty" }, "No session found yet."));
}

async function pick(id) {
  picked = id;
  renderList();
  await renderTimeline();
}

async function renderTimeline() {
  const id = picked;
  const mine = generation;
  const box = $("timeline");
  if (!id) return;
  const session = sessions.get(id);
  try {
    const all = await mapLimited([...eventIds], PARALLEL, eventById);
    const mineEvents = all.filter((e) => e && e.serverSessionId === id).sort((a, b) => a.occurredAtEpoch - b.occurredAtEpoch);
    const observations = await mapLimited(mineEvents, PARALLEL, async (e) =>
      (await get(`/v1/events/${encodeURIComponent(e.id)}/observations`)).observations,
    );
    if (mine !== generation || id !== picked) return;
    const steps = mineEvents.map((e, i) => eventEntry(e, observations[i]));
    const summary = summaries.get(id) || [];
    box.replaceChildren(
      el(
        "header",
        { className: "timeline-head" },
        el("h3", {}, `Session ${shortId(id)}`),
        el(
          "p",
          { className: "hint" },
          "Started ",
          timeElement(session?.startedAtEpoch),
          session?.endedAtEpoch ? " · ended " : " · still open",
          session?.endedAtEpoch ? timeElement(session.endedAtEpoch) : null,
          session?.contentSessionId ? ` · agent session ${session.contentSessionId}` : "",
        ),
      ),
      steps.length
        ? el("ol", { className: "steps", "aria-label": "Timeline" }, steps)
        : el("p", { className: "empty" }, "No prompt or tool use found for this session."),
      el(
        "section",
        { className: "summary", "aria-label": "Summary" },
        el("h4", {}, "Summary"),
        summary.length
          ? el("ol", { className: "items nested" }, summary.map((o) => observationItem(o)))
          : el("p", { className: "hint" }, session?.endedAtEpoch ? "No summary yet." : "The session has not ended."),
      ),
    );
  } catch (exc) {
    if (mine === generation) showError($("sessions-error"), exc.describe());
  }
}

async function load() {
  const projectId = currentProject();
  if (!projectId) return;
  const mine = generation;
  showError($("sessions-error"), "");
  try {
    await discover(projectId);
    await readSessions();
    if (mine !== generation) return;
    loaded = true;
    renderList();
    if (picked) await renderTimeline();
  } catch (exc) {
    if (mine === generation) showError($("sessions-error"), exc.describe());
  }
}

function refreshSoon() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(async () => {
    refreshTimer = null;
    if ($("view-sessions").hidden) return;
    await readSessions().catch(() => {});
    renderList();
    if (picked) await renderTimeline();
  }, 400);
}

export function init(project) {
  currentProject = project;
}

export function reset() {
  generation++;
  loaded = false;
  picked = null;
  events.clear();
  eventIds.clear();
  sessions.clear();
  summaries.clear();
  $("session-list").replaceChildren();
  $("timeline").replaceChildren(el("p", { className: "empty" }, "No session picked."));
  showError($("sessions-error"), "");
}

export function onShow() {
  if (!loaded) load();
  else refreshSoon();
}

export function onLive(kind, item) {
  if (kind === "event") {
    events.set(item.id, item);
    eventIds.add(item.id);
  }
  if (kind === "summary") addSummary(item);
  const sessionId = item.serverSessionId;
  if (sessionId && !sessions.has(sessionId)) sessions.set(sessionId, null);
  if (loaded && (kind !== "job")) refreshSoon();
}
