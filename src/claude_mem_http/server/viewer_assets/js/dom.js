// Building the page from data: every stored string becomes a text node, never markup.

// el("li", { className: "x", dataset: { id } }, "text", child): attributes are set as
// properties or with setAttribute, children strings become text nodes.
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "className") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else node.setAttribute(name, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else if (child instanceof Node) node.appendChild(child);
    else node.appendChild(document.createTextNode(String(child)));
  }
}

export function clear(node) {
  node.replaceChildren();
}

// Search excerpts mark matched words as **word**: each marked run becomes a <mark>, the
// rest plain text nodes. An unpaired ** stays as it is.
export function markedText(text) {
  const fragment = document.createDocumentFragment();
  const parts = String(text ?? "").split("**");
  if (parts.length % 2 === 0) {
    // odd number of markers: the last one is unpaired, keep it literally
    const last = parts.pop();
    parts[parts.length - 1] += `**${last}`;
  }
  parts.forEach((part, index) => {
    if (!part) return;
    if (index % 2 === 1) fragment.appendChild(el("mark", {}, part));
    else fragment.appendChild(document.createTextNode(part));
  });
  return fragment;
}

export function showError(node, message) {
  node.textContent = message || "";
  node.hidden = !message;
}

const timeFormat = new Intl.DateTimeFormat(undefined, {
  dateStyle: "medium",
  timeStyle: "medium",
});

export function formatTime(epochMs) {
  if (epochMs === null || epochMs === undefined) return "";
  return timeFormat.format(new Date(epochMs));
}

// The calendar day (local time) of an epoch in milliseconds, as YYYY-MM-DD.
export function dayOf(epochMs) {
  const d = new Date(epochMs);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

export function timeElement(epochMs) {
  if (epochMs === null || epochMs === undefined) return el("span", {}, "");
  return el("time", { datetime: new Date(epochMs).toISOString() }, formatTime(epochMs));
}

export function shortId(id) {
  return String(id ?? "").slice(0, 8);
}

// An observation as a list item: title, kind and type, time, then its content as text.
export function observationItem(observation, { extra } = {}) {
  const title = observation.title || firstLine(observation.content) || "(untitled)";
  return el(
    "li",
    { className: "item observation", dataset: { id: observation.id } },
    el(
      "div",
      { className: "item-head" },
      el("h3", { className: "item-title" }, title),
      el("span", { className: "badge" }, observation.kind),
      observation.type ? el("span", { className: "badge subtle" }, observation.type) : null,
      timeElement(observation.createdAtEpoch),
    ),
    extra || null,
    el("p", { className: "content" }, observation.content ?? ""),
  );
}

export function firstLine(text) {
  return String(text ?? "").split("\n", 1)[0].trim();
}
