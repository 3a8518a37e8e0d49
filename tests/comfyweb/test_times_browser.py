"""static/js/times.js says relative times exactly as comfyweb/timefmt.py does: the
browser rewrites <time data-tick> elements, and a fragment swapped in live reads
like the page it lands in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from comfyweb import timefmt
from tests.browser import log_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# (kind, seconds from now to the moment): negative is in the past.
CASES = [
    ("ago", -0.2),
    ("ago", -12.5),
    ("ago", -(3 * 60 + 12.5)),
    ("ago", -(2 * 3600 + 5 * 60 + 30)),
    ("ago", -(4 * 86400 + 3 * 3600 + 1800)),
    ("ago", -3600.5),
    ("until", 4.5),
    ("until", 3600 + 90.5),
    ("until", -10),
    ("elapsed", -6.55),
    ("elapsed", -75.5),
    ("elapsed", -(3 * 3600 + 1800)),
]

INSERT = """([cases, now]) => {
  const box = document.createElement("div");
  box.id = "tick-cases";
  for (const [kind, offset] of cases) {
    const element = document.createElement("time");
    element.dataset.tick = kind;
    element.setAttribute("datetime", new Date(now + offset * 1000).toISOString());
    element.textContent = "?";
    box.append(element);
  }
  document.querySelector("main").append(box);
  document.dispatchEvent(new CustomEvent("live:swapped", { detail: { target: "tick-cases" } }));
  return [...box.children].map((element) => element.textContent);
}"""


def python_says(kind: str, offset: float, now: datetime) -> str:
    moment = now + timedelta(seconds=offset)
    if kind == "elapsed":
        return timefmt.elapsed(timefmt.seconds_since(moment, now))
    return getattr(timefmt, kind)(moment, now)


def test_the_browser_formats_relative_times_like_the_server(page, running_serve):
    log_in(page, running_serve)
    now_ms = page.evaluate("Date.now()")
    texts = page.evaluate(INSERT, [CASES, now_ms])
    # The browser read its clock a moment after now_ms: allow up to a second and a half.
    now = datetime.fromtimestamp(now_ms / 1000, UTC)
    for (kind, offset), text in zip(CASES, texts, strict=True):
        allowed = {python_says(kind, offset, now + timedelta(seconds=s / 10)) for s in range(16)}
        assert text in allowed, f"{kind} {offset}: browser {text!r}, server {sorted(allowed)}"
    assert page.console_errors == []
