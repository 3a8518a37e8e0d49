// Relative times stay true while a page is open: every <time data-tick> the
// server rendered ("12 s ago", "elapsed 6.2 s", "in 4 s") is rewritten every
// second from its datetime, with the rules of comfyweb/timefmt.py (keep the two
// in step), and again as soon as live.js swaps a fragment in.

const UNITS = [
  [86400, "d", 3600, "h"],
  [3600, "h", 60, "min"],
  [60, "min", 1, "s"],
];

function span(seconds) {
  const whole = Math.max(0, Math.floor(seconds));
  if (whole < 60) return `${whole} s`;
  const [size, name, smallSize, smallName] = UNITS.find(([size]) => whole >= size);
  const big = Math.floor(whole / size);
  const small = Math.floor((whole % size) / smallSize);
  return small ? `${big} ${name} ${small} ${smallName}` : `${big} ${name}`;
}

function elapsed(seconds) {
  seconds = Math.max(0, seconds);
  return seconds < 60 ? `${(Math.floor(seconds * 10) / 10).toFixed(1)} s` : span(seconds);
}

const FORMATS = {
  ago: (seconds) => (seconds < 1 ? "just now" : `${span(seconds)} ago`),
  until: (seconds) => (-seconds < 1 ? "now" : `in ${span(-seconds)}`),
  elapsed,
};

// The server's clock is the truth: a browser clock that is off by more than the
// page's own age would say "in 2 min" of a moment that has passed.
const rendered = Number(document.documentElement.dataset.renderedAt) * 1000;
const skew = Number.isFinite(rendered) && Math.abs(rendered - Date.now()) > 2000 ? rendered - Date.now() : 0;

export function tick() {
  const now = Date.now() + skew;
  for (const element of document.querySelectorAll("time[data-tick]")) {
    const format = FORMATS[element.dataset.tick];
    const at = Date.parse(element.getAttribute("datetime"));
    if (!format || Number.isNaN(at)) continue;
    const text = format((now - at) / 1000);
    if (element.textContent !== text) element.textContent = text;
  }
}

document.addEventListener("live:swapped", tick);
setInterval(tick, 1000);
tick();
