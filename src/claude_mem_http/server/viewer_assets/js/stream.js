// The live stream (GET /v1/stream, Server-Sent Events) read with fetch, because
// EventSource cannot send the Authorization header. On a dropped connection it reconnects
// with Last-Event-ID set to the last message's id, so nothing is missed in between.

import { authHeaders } from "./api.js";

const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 30000;

// Split a text buffer into complete SSE blocks; returns [blocks, rest].
export function splitBlocks(buffer) {
  const normalized = buffer.replace(/\r\n?/g, "\n");
  const blocks = normalized.split("\n\n");
  const rest = blocks.pop();
  return [blocks, rest];
}

// One SSE block -> { id, event, data, comments }.
export function parseBlock(block) {
  const message = { id: null, event: "message", data: null, comments: [] };
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) {
      message.comments.push(line.slice(1).trim());
      continue;
    }
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "id") message.id = value;
    else if (field === "event") message.event = value;
    else if (field === "data") data.push(value);
  }
  if (data.length) message.data = data.join("\n");
  return message;
}

// openStream({ projectId, onMessage, onState }) -> { close() }
// onMessage(kind, payload) for each event|observation|summary|job message;
// onState(state, detail) with "connecting" | "live" | "retrying" | "unavailable" | "refused".
export function openStream({ projectId, onMessage, onState }) {
  let lastId = null;
  let closed = false;
  let controller = null;
  let delay = RETRY_MIN_MS;
  let timer = null;

  async function connect() {
    if (closed) return;
    controller = new AbortController();
    onState("connecting");
    const headers = authHeaders({ Accept: "text/event-stream" });
    const resuming = Boolean(lastId);
    if (resuming) headers["Last-Event-ID"] = lastId;
    let response;
    try {
      const path = `/v1/stream?${new URLSearchParams({ projectId })}`;
      response = await fetch(path, {
        headers,
        cache: "no-store",
        credentials: "omit",
        signal: controller.signal,
      });
    } catch {
      return retry();
    }
    if (response.status === 404 && !lastId) {
      onState("unavailable", "This server has no live stream.");
      return undefined;
    }
    if (response.status === 401 || response.status === 403) {
      let message = "";
      try {
        message = (await response.json()).message || "";
      } catch {
        // keep it empty
      }
      onState("refused", message);
      return undefined;
    }
    if (response.status === 410) {
      // Away longer than the server keeps changes: start again from now (what was shown
      // stays; the views reload what they list when asked).
      lastId = null;
      return retry();
    }
    if (!response.ok || !response.body) return retry();
    // A fresh stream is live at its ": ready" comment; a resumed one replays at once.
    if (resuming) onState("live");
    try {
      await read(response.body);
    } catch {
      // dropped or aborted: fall through to reconnect
    }
    return retry();
  }

  async function read(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done || closed) return;
      buffer += value;
      const [blocks, rest] = splitBlocks(buffer);
      buffer = rest;
      for (const block of blocks) handle(parseBlock(block));
    }
  }

  function handle(message) {
    for (const comment of message.comments) {
      // ": ready <cursor>" opens a stream without a cursor: resume from there if it drops.
      const ready = /^ready\s+(\S+)/.exec(comment);
      if (ready) {
        if (!lastId) lastId = ready[1];
        onState("live");
      }
    }
    if (message.id !== null) lastId = message.id;
    if (message.data === null) return;
    let payload;
    try {
      payload = JSON.parse(message.data);
    } catch {
      return;
    }
    delay = RETRY_MIN_MS;
    onMessage(message.event, payload);
  }

  function retry() {
    if (closed) return;
    onState("retrying");
    timer = setTimeout(connect, delay);
    delay = Math.min(delay * 2, RETRY_MAX_MS);
  }

  connect();
  return {
    close() {
      closed = true;
      if (timer) clearTimeout(timer);
      if (controller) controller.abort();
    },
  };
}
