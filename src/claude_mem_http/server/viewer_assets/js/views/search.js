// Search: POST /v1/search, each hit with its title and the excerpts that matched, the
// matched words marked.

import { post } from "../api.js";
import { el, firstLine, markedText, showError, timeElement } from "../dom.js";

const $ = (id) => document.getElementById(id);
let currentProject = () => null;
let generation = 0;

function hitItem(hit) {
  const excerpts = (hit.evidence || []).map((e) => e.excerpt).filter(Boolean);
  if (!excerpts.length && hit.excerpt) excerpts.push(hit.excerpt);
  return el(
    "li",
    { className: "item hit", dataset: { id: hit.id } },
    el(
      "div",
      { className: "item-head" },
      el("h3", { className: "item-title" }, hit.title || firstLine(hit.content) || "(untitled)"),
      el("span", { className: "badge" }, hit.kind),
      hit.type ? el("span", { className: "badge subtle" }, hit.type) : null,
      timeElement(hit.createdAtEpoch),
    ),
    excerpts.length
      ? el(
          "ul",
          { className: "excerpts", "aria-label": "Matching excerpts" },
          excerpts.map((text) => el("li", { className: "excerpt" }, markedText(text))),
        )
      : el("p", { className: "content" }, hit.content ?? ""),
  );
}

async function run(event) {
  event.preventDefault();
  const projectId = currentProject();
  const text = $("search-query").value.trim();
  const results = $("search-results");
  showError($("search-error"), "");
  if (!projectId) return;
  if (!text) {
    showError($("search-error"), "Type something to search for.");
    $("search-query").focus();
    return;
  }
  const mine = ++generation;
  $("search-status").textContent = "Searching…";
  try {
    const body = await post("/v1/search", { projectId, query: text, limit: 20 });
    if (mine !== generation) return;
    results.replaceChildren(...body.observations.map(hitItem));
    const n = body.observations.length;
    $("search-status").textContent = n ? `${n} result${n === 1 ? "" : "s"}.` : "Nothing matched.";
  } catch (exc) {
    if (mine !== generation) return;
    results.replaceChildren();
    $("search-status").textContent = "";
    showError($("search-error"), exc.describe());
  }
}

export function init(project) {
  currentProject = project;
  $("search-form").addEventListener("submit", run);
}

export function reset() {
  generation++;
  $("search-results").replaceChildren();
  $("search-status").textContent = "";
  showError($("search-error"), "");
}
