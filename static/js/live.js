// Live updates: one WebSocket per page to /ws/live/, subscribed to the topics
// that elements on the page name in data-live-topic (and data-live-key). The
// server pushes rendered HTML fragments; we swap each in by element id, so all
// markup stays server-rendered.

const CLOSE_UNAUTHENTICATED = 4401;
const BASE_DELAY_MS = 500;
const MAX_DELAY_MS = 30000;
const STABLE_AFTER_MS = 10000;

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws/live/`;
}

// Same schedule as comfyweb/backoff.py: min(cap, base * 2^n) + jitter.
function backoffDelay(attempt) {
  return Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** attempt) + Math.random() * 500;
}

function subscriptions() {
  const seen = new Map();
  for (const element of document.querySelectorAll("[data-live-topic]")) {
    const topic = element.dataset.liveTopic;
    const key = element.dataset.liveKey ?? null;
    seen.set(`${topic}/${key}`, { action: "subscribe", topic, key });
  }
  return [...seen.values()];
}

function swapFragment(targetId, html) {
  const current = document.getElementById(targetId);
  if (!current) return;
  const template = document.createElement("template");
  template.innerHTML = html.trim();
  const replacement = template.content.firstElementChild;
  if (!replacement) return;
  current.replaceWith(replacement);
  document.dispatchEvent(new CustomEvent("live:swapped", { detail: { target: targetId } }));
}

// Every element of a fetched partial replaces the page's element with its id: a
// partial may carry panels rendered from one read of the numbers (the dashboard's
// queue and fleet panels), so they change together.
// A fetch answers with what was true when the server read it: an element that a push
// changed meanwhile keeps the push (`since`: the push count when the fetch began).
let pushes = 0;
const pushedAt = new Map();

function swapAll(html, since) {
  const template = document.createElement("template");
  template.innerHTML = html.trim();
  for (const element of [...template.content.children]) {
    if (element.id && (pushedAt.get(element.id) ?? 0) <= since) swapFragment(element.id, element.outerHTML);
  }
}

// Per-user panels get a "something changed" hint and fetch their own partial,
// at most once per REFRESH_MS per partial however many hints arrive (for any
// of the elements it holds).
const REFRESH_MS = 1000;
const refreshTimers = new Map();

async function refresh(url) {
  const since = pushes;
  try {
    const response = await fetch(url, { credentials: "same-origin", headers: { "X-Fragment": "1" } });
    if (response.ok) swapAll(await response.text(), since);
  } catch {
    // The next hint or the reconnect snapshot brings the panel up to date.
  }
}

function scheduleRefresh(url) {
  if (refreshTimers.has(url)) return;
  refreshTimers.set(
    url,
    setTimeout(() => {
      refreshTimers.delete(url);
      refresh(url);
    }, REFRESH_MS),
  );
}

// Once every subscription of a socket is answered, changes reach the page as pushes;
// what changed before (between the page's render and now, or while it was offline)
// the parts marked data-refresh-on-subscribe fetch. A list's rows have no snapshot
// (the page's filters chose them), and its expected times are left to this fetch so
// that the list answers without a forecast.
function subscribed() {
  for (const element of document.querySelectorAll("[data-refresh-url][data-refresh-on-subscribe]"))
    refresh(element.dataset.refreshUrl);
  document.dispatchEvent(new CustomEvent("live:subscribed"));
}

function setState(state) {
  document.body.dataset.live = state;
  const label = document.querySelector(".live-indicator .live-label");
  if (label) label.textContent = { open: "live", connecting: "connecting", closed: "offline" }[state] ?? state;
}

export function connect() {
  const wanted = subscriptions();
  if (wanted.length === 0) return;
  let attempt = 0;
  let openedAt = 0;

  const open = () => {
    setState("connecting");
    const socket = new WebSocket(socketUrl());
    let unanswered = wanted.length;
    socket.addEventListener("open", () => {
      openedAt = Date.now();
      for (const message of wanted) socket.send(JSON.stringify(message));
    });
    socket.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (message.type === "subscribed" || (message.type === "error" && unanswered > 0)) {
        if (--unanswered === 0) {
          setState("open");
          subscribed();
        }
      } else if (message.type === "fragment.update") {
        pushedAt.set(message.target, ++pushes);
        swapFragment(message.target, message.html);
      } else if (message.type === "fragment.refresh") {
        // The element may name its own partial (e.g. the estimates of the tasks it shows).
        const element = document.getElementById(message.target);
        if (element) scheduleRefresh(element.dataset.refreshUrl || message.url);
      }
    });
    socket.addEventListener("close", (event) => {
      setState("closed");
      if (event.code === CLOSE_UNAUTHENTICATED) return; // session ended: no point retrying
      if (openedAt && Date.now() - openedAt >= STABLE_AFTER_MS) attempt = 0;
      openedAt = 0;
      setTimeout(open, backoffDelay(attempt++));
    });
  };
  open();
}

connect();
