// The viewer's entry point: sign in and out, the project picker, the tabs, and the live
// stream that feeds every view.

import { forgetKey, get, query, storeKey, storedKey } from "./api.js";
import { el, showError } from "./dom.js";
import { openStream } from "./stream.js";
import * as live from "./views/live.js";
import * as search from "./views/search.js";
import * as sessions from "./views/sessions.js";
import * as jobs from "./views/jobs.js";
import * as stats from "./views/stats.js";

const PROJECT_SLOT = "claude-mem.viewer.project";
const VIEWS = { live, search, sessions, jobs, stats };

const $ = (id) => document.getElementById(id);

const state = {
  projectId: null,
  stream: null,
  active: "live",
  // Bumped by every sign-in and sign-out: a sign-in still awaiting the server when the user
  // signs out (or in again) must not go on and choose a project for a session that ended.
  session: 0,
};

function setLiveStatus(kind, detail) {
  const labels = {
    connecting: "Connecting…",
    live: "Live",
    retrying: "Reconnecting…",
    unavailable: "Live updates unavailable",
    refused: "Live updates refused",
  };
  const node = $("live-status");
  node.textContent = labels[kind] || kind;
  node.dataset.state = kind;
  node.title = detail || "";
}

function stopStream() {
  if (state.stream) state.stream.close();
  state.stream = null;
}

function startStream() {
  stopStream();
  if (!state.projectId) return;
  const projectId = state.projectId;
  state.stream = openStream({
    projectId,
    onState: setLiveStatus,
    onMessage(kind, payload) {
      if (!payload || payload.projectId !== projectId || !payload.item) return;
      for (const view of Object.values(VIEWS)) {
        if (view.onLive) view.onLive(kind, payload.item);
      }
    },
  });
}

function selectTab(name, { focus = false } = {}) {
  state.active = name;
  for (const key of Object.keys(VIEWS)) {
    const tab = $(`tab-${key}`);
    const selected = key === name;
    tab.setAttribute("aria-selected", String(selected));
    tab.tabIndex = selected ? 0 : -1;
    $(`view-${key}`).hidden = !selected;
    if (selected && focus) tab.focus();
  }
  const view = VIEWS[name];
  if (view.onShow && state.projectId) view.onShow();
}

function wireTabs() {
  const names = Object.keys(VIEWS);
  names.forEach((name, index) => {
    const tab = $(`tab-${name}`);
    tab.addEventListener("click", () => selectTab(name));
    tab.addEventListener("keydown", (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (step) {
        event.preventDefault();
        selectTab(names[(index + step + names.length) % names.length], { focus: true });
      } else if (event.key === "Home" || event.key === "End") {
        event.preventDefault();
        selectTab(names[event.key === "Home" ? 0 : names.length - 1], { focus: true });
      }
    });
  });
}

async function chooseProject(projectId) {
  state.projectId = projectId;
  sessionStorage.setItem(PROJECT_SLOT, projectId);
  startStream();
  for (const view of Object.values(VIEWS)) {
    if (view.reset) view.reset(projectId);
  }
  const active = VIEWS[state.active];
  if (active.onShow) active.onShow();
}

function showSignedOut(message) {
  stopStream();
  state.projectId = null;
  $("app").hidden = true;
  $("session-bar").hidden = true;
  $("sign-in").hidden = false;
  showError($("sign-in-error"), message);
  $("api-key").value = "";
}

async function showSignedIn(session) {
  const projects = await get(`/v1/projects${query({ limit: 500 })}`);
  if (session !== state.session) return;
  const picker = $("project");
  picker.replaceChildren(
    ...projects.projects.map((p) => el("option", { value: p.id }, `${p.name} (${p.id.slice(0, 8)})`)),
  );
  $("sign-in").hidden = true;
  $("session-bar").hidden = false;
  $("app").hidden = false;
  showError($("sign-in-error"), "");
  await jobs.learnScopes();
  if (session !== state.session) return;
  if (!projects.projects.length) {
    picker.append(el("option", { value: "" }, "no project"));
    showError($("live-error"), "This key sees no project yet.");
    return;
  }
  const remembered = sessionStorage.getItem(PROJECT_SLOT);
  const chosen = projects.projects.some((p) => p.id === remembered)
    ? remembered
    : projects.projects[0].id;
  picker.value = chosen;
  selectTab(state.active);
  await chooseProject(chosen);
}

async function signIn(event) {
  event.preventDefault();
  const input = $("api-key");
  const key = input.value.trim();
  input.value = "";
  if (!key) {
    showError($("sign-in-error"), "Enter an API key.");
    input.focus();
    return;
  }
  storeKey(key);
  const session = ++state.session;
  try {
    await showSignedIn(session);
  } catch (exc) {
    if (session !== state.session) return;
    forgetKey();
    const why =
      exc.status === 401 || exc.status === 403
        ? `That key was refused (${exc.describe()}). Check it, or ask for a key with memories:read.`
        : `Could not sign in: ${exc.describe ? exc.describe() : exc.message}`;
    showSignedOut(why);
    input.focus();
  }
}

function signOut() {
  state.session += 1;
  forgetKey();
  sessionStorage.removeItem(PROJECT_SLOT);
  for (const view of Object.values(VIEWS)) {
    if (view.reset) view.reset(null);
  }
  showSignedOut("");
  $("api-key").focus();
}

function start() {
  wireTabs();
  $("sign-in-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", signOut);
  $("project").addEventListener("change", (event) => {
    if (event.target.value) chooseProject(event.target.value);
  });
  for (const view of Object.values(VIEWS)) {
    if (view.init) view.init(() => state.projectId);
  }
  if (storedKey()) {
    const session = ++state.session;
    showSignedIn(session).catch((exc) => {
      if (session !== state.session) return;
      forgetKey();
      showSignedOut(`Signed out: ${exc.describe ? exc.describe() : exc.message}`);
    });
  }
}

start();
