"""Moments and spans of time on pages: `{% load times %}`, then

- `{{ task.created_at|when }}`: the moment (`2026-12-01 14:03:07`, comfyweb/timefmt.py);
- `{{ task.created_at|ago }}`: `12 s ago`, kept fresh in the browser;
- `{{ task.started_at|elapsed:task.finished_at }}`: `6.2 s`; while the end is None
  it counts up in the browser;
- `{{ retry_at|until }}`: `in 12 s`, counting down;
- `{{ seconds|duration }}`: an expected span in words (`3 min 20 s`).

Each renders a `<time>` whose `datetime` is the ISO 8601 moment, titled with the
moment itself; the ticking ones carry `data-tick`, which `static/js/times.js`
re-renders every second and after every live swap, so a fragment pushed later
reads like the page it lands in. None renders as '' (so `|default:"—"` applies).
"""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils.html import format_html

from comfyweb import timefmt

register = template.Library()


def _time(value: datetime, text: str, tick: str = "") -> str:
    return format_html(
        '<time datetime="{}" title="{}"{}>{}</time>',
        value.isoformat(),
        timefmt.moment(value),
        format_html(' data-tick="{}"', tick) if tick else "",
        text,
    )


@register.filter
def when(value: datetime | None) -> str:
    return "" if value is None else _time(value, timefmt.moment(value))


@register.filter
def ago(value: datetime | None) -> str:
    return "" if value is None else _time(value, timefmt.ago(value), "ago")


@register.filter
def until(value: datetime | None) -> str:
    return "" if value is None else _time(value, timefmt.until(value), "until")


@register.filter
def elapsed(start: datetime | None, end: datetime | None = None) -> str:
    """From start to end; to now, counting, while there is no end."""
    if start is None:
        return ""
    if end is not None:
        return _time(start, timefmt.elapsed((end - start).total_seconds()))
    return _time(start, timefmt.elapsed(timefmt.seconds_since(start)), "elapsed")


@register.filter
def duration(seconds: float | None) -> str:
    return timefmt.duration(seconds)
