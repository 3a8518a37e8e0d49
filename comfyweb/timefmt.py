"""How every page says a moment or a span of time (issue 16, part 6): one format.

- a moment: `2026-12-01 14:03:07` in the display time zone (`TIME_ZONE`), the
  same on every page; the API keeps ISO 8601;
- how long ago: `just now`, `12 s ago`, `3 min 12 s ago`, `2 h 5 min ago`, `4 d 3 h ago`;
- a span that is still running or just ended (elapsed): `6.2 s` under a minute,
  then as above (`3 min 12 s`);
- a span we expect (an ETA, a retry): whole seconds, as above.

Seconds stay visible under a minute, where they are what people watch. The page's
`static/js/times.js` keeps the relative ones fresh with the same rules: a change
here is a change there (tests/comfyweb/test_times_browser.py compares them).
"""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

MOMENT_FORMAT = "%Y-%m-%d %H:%M:%S"


def moment(value: datetime) -> str:
    """The one way a date and time reads: local to the display time zone."""
    if timezone.is_aware(value):
        value = timezone.localtime(value)
    return value.strftime(MOMENT_FORMAT)


def span(seconds: float) -> str:
    """Whole units, the two largest that are not zero: '12 s', '3 min 12 s', '2 h', '4 d 3 h'."""
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole} s"
    size, name, small_size, small_name = next(unit for unit in _UNITS if whole >= unit[0])
    big, small = whole // size, whole % size // small_size
    return f"{big} {name} {small} {small_name}" if small else f"{big} {name}"


_UNITS = ((86400, "d", 3600, "h"), (3600, "h", 60, "min"), (60, "min", 1, "s"))


def duration(seconds: float | None) -> str:
    """An expected span (ETA, backoff), rounded to the second; '' when unknown."""
    return "" if seconds is None else span(round(seconds))


def elapsed(seconds: float) -> str:
    """A span measured so far: a tenth of a second under a minute ('6.2 s')."""
    seconds = max(0.0, seconds)
    # Truncated, not rounded, so a ticking display never shows 60.0 s before 1 min.
    return f"{int(seconds * 10) / 10:.1f} s" if seconds < 60 else span(seconds)


def seconds_since(value: datetime, now: datetime | None = None) -> float:
    return ((now or timezone.now()) - value).total_seconds()


def ago(value: datetime, now: datetime | None = None) -> str:
    seconds = seconds_since(value, now)
    return "just now" if seconds < 1 else f"{span(seconds)} ago"


def until(value: datetime, now: datetime | None = None) -> str:
    seconds = -seconds_since(value, now)
    return "now" if seconds < 1 else f"in {span(seconds)}"
