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
function swapAll(html) {
  const template = document.createElement("template");
  template.innerHTML = html.trim();
  for (const element of [...template.content.children]) {
    if (element.id) swapFragment(element.id, element.outerHTML);
  }
}

// Per-user panels get a "something changed" hint and fetch their own partial,
// at most once per REFRESH_MS per partial however many hints arrive (for any
// of the elements it holds).
const REFRESH_MS = 1000;
const refreshTimers = new Map();

async function refresh(url) {
  try {
    const response = await fetch(url, { credentials: "same-origin", headers: { "X-Fragment": "1" } });
    if (response.ok) swapAll(await response.text());
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

// Parts a page leaves to be fetched once it is shown (e.g. a list's expected
// times, which would cost its first answer a forecast).
for (const element of document.querySelectorAll("[data-refresh-url][data-refresh-on-load]"))
  refresh(element.dataset.refreshUrl);

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
    socket.addEventListener("open", () => {
      openedAt = Date.now();
      setState("open");
      for (const message of wanted) socket.send(JSON.stringify(message));
    });
    socket.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (message.type === "fragment.update") swapFragment(message.target, message.html);
      else if (message.type === "fragment.refresh") {
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
