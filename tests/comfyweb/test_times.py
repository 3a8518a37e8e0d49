"""One way to say a moment or a span of time (comfyweb/timefmt.py and its filters)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.template import Context, Template
from django.utils import formats, timezone

from comfyweb import timefmt

NOW = datetime(2026, 12, 1, 14, 3, 7, tzinfo=UTC)


def render(source: str, **context) -> str:
    return Template(source).render(Context(context))


def test_spans_keep_seconds_under_a_minute_and_two_units_above():
    seconds = (0, 12, 59.9, 60, 61, 192, 3600, 3660, 7500, 86400, 90000)
    assert [timefmt.span(s) for s in seconds] == [
        "0 s", "12 s", "59 s", "1 min", "1 min 1 s", "3 min 12 s",
        "1 h", "1 h 1 min", "2 h 5 min", "1 d", "1 d 1 h",
    ]  # fmt: skip


def test_expected_durations_round_to_the_second_and_unknown_is_empty():
    assert [timefmt.duration(s) for s in (None, 0, 44.6, 200, 7500)] == [
        "", "0 s", "45 s", "3 min 20 s", "2 h 5 min",
    ]  # fmt: skip


def test_elapsed_shows_tenths_under_a_minute_and_never_rounds_up_to_sixty():
    assert [timefmt.elapsed(s) for s in (-1, 0, 6.25, 59.99, 60, 75)] == [
        "0.0 s", "0.0 s", "6.2 s", "59.9 s", "1 min", "1 min 15 s",
    ]  # fmt: skip


def test_ago_and_until_read_as_people_say_them():
    assert timefmt.ago(NOW - timedelta(seconds=0.4), NOW) == "just now"
    assert timefmt.ago(NOW - timedelta(seconds=12), NOW) == "12 s ago"
    assert timefmt.ago(NOW - timedelta(minutes=3, seconds=12), NOW) == "3 min 12 s ago"
    assert timefmt.until(NOW + timedelta(seconds=4.5), NOW) == "in 4 s"
    assert timefmt.until(NOW - timedelta(seconds=3), NOW) == "now"


def test_moments_are_shown_in_the_display_time_zone_in_one_format():
    with timezone.override("Europe/Paris"):
        assert timefmt.moment(NOW) == "2026-12-01 15:03:07"


def test_the_when_filter_renders_a_time_element_with_the_iso_moment():
    assert render("{{ at|when }}", at=NOW) == (
        '<time datetime="2026-12-01T14:03:07+00:00" title="2026-12-01 14:03:07">'
        "2026-12-01 14:03:07</time>"
    )


def test_relative_filters_mark_what_the_browser_keeps_fresh():
    started = timezone.now() - timedelta(seconds=6.25)
    running = render("{{ at|elapsed }}", at=started)
    assert 'data-tick="elapsed"' in running
    assert ">6.2 s<" in running or ">6.3 s<" in running
    done = render("{{ at|elapsed:end }}", at=started, end=started + timedelta(seconds=75))
    assert "data-tick" not in done
    assert ">1 min 15 s<" in done
    assert 'data-tick="ago"' in render("{{ at|ago }}", at=started)
    assert 'data-tick="until"' in render("{{ at|until }}", at=started + timedelta(minutes=1))


@pytest.mark.parametrize("name", ["when", "ago", "elapsed", "until"])
def test_a_missing_moment_renders_nothing_so_a_default_applies(name):
    assert render(f'{{{{ at|{name}|default:"—" }}}}', at=None) == "—"


def test_no_page_formats_a_date_or_a_span_its_own_way():
    """Every template goes through the filters above: no |date, |time, |timesince."""
    root = Path(__file__).resolve().parents[2] / "templates"
    offenders = [
        f"{path.relative_to(root)}: {marker}"
        for path in root.rglob("*.html")
        for marker in ("|date", "|time:", "|timesince", "|timeuntil", "|naturaltime")
        if marker in path.read_text()
    ]
    assert offenders == []


def test_djangos_own_displays_such_as_the_admins_use_the_same_format():
    assert formats.date_format(NOW, "DATETIME_FORMAT") == timefmt.moment(NOW)
    assert formats.date_format(NOW.date(), "DATE_FORMAT") == "2026-12-01"
