// Live: the project's latest observations, with new ones added at the top as the stream
// brings them.

import { get, query } from "../api.js";
import { observationItem, showError } from "../dom.js";

const RECENT = 50;
const KEEP = 200;

const $ = (id) => document.getElementById(id);
let generation = 0;

function list() {
  return $("live-list");
}

function present(id) {
  return [...list().children].some((li) => li.dataset.id === id);
}

function updateEmpty() {
  $("live-empty").hidden = list().children.length > 0;
}

export function add(observation, { atTop = true } = {}) {
  if (present(observation.id)) return;
  const item = observationItem(observation);
  if (atTop) {
    item.classList.add("fresh");
    list().prepend(item);
  } else list().append(item);
  while (list().children.length > KEEP) list().lastElementChild.remove();
  updateEmpty();
}

export async function reset(projectId) {
  const mine = ++generation;
  list().replaceChildren();
  showError($("live-error"), "");
  $("live-empty").hidden = true;
  if (!projectId) return;
  try {
    const body = await get(`/v1/memories/recent${query({ projectId, limit: RECENT })}`);
    if (mine !== generation) return;
    // Newest first; anything the stream added meanwhile stays above.
    for (const observation of body.memories) add(observation, { atTop: false });
  } catch (exc) {
    if (mine === generation) showError($("live-error"), exc.describe());
  }
  updateEmpty();
}

export function onLive(kind, item) {
  if (kind === "observation" || kind === "summary") add(item);
}
