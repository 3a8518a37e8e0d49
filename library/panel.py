"""The Downloads page's live part (issue #14): the downloads with their progress and
the library's files, rendered on the server for one user and kept live on the
"downloads" topic.

Staff see each download's full URL and the Cancel / Retry buttons, others a URL
without its query string, so the HTML differs per user: `progress.publish_progress`
broadcasts a refresh hint and each browser fetches its own panel from
`library:downloads_panel`. The fetched partial holds both sections (downloads and
library), and live.js swaps each in by id: a download that completes shows up in
the library in the same swap.

The fragments hold no CSRF token (a socket snapshot is rendered without a request):
staff buttons name, by their `form` attribute, a form the page itself rendered
with the token (`library/panels.html#download-forms`).
"""

from __future__ import annotations

from itertools import groupby

from django.template.loader import render_to_string

from comfyweb import topics
from comfyweb.timefmt import duration
from library import progress
from library.models import ACTIVE_STATES, Download, ModelFile

PAGE = "library/downloads.html"
TEMPLATE = "library/panels.html"  # the partials, the page's and the pushed ones
LIBRARY_TARGET = "library-panel"
ENDED_SHOWN = 50  # the most recent ended downloads listed (every active one is)


class Row:
    """One download as the table shows it: the row, and the figures people watch."""

    def __init__(self, download: Download, *, staff: bool) -> None:
        self.download = download
        self.url = progress.shown_url(download.url, full=staff)
        fraction = progress.fraction(download)
        self.percent = None if fraction is None else round(fraction * 100, 1)
        self.eta_text = duration(progress.eta_seconds(download))


def recent_downloads() -> list[Download]:
    """Every active download and the last ENDED_SHOWN ended ones, newest first.
    `headers` is never loaded: nothing on a page could show it by mistake."""
    rows = Download.objects.defer("headers")
    active = list(rows.filter(state__in=ACTIVE_STATES))
    ended = list(rows.exclude(state__in=ACTIVE_STATES)[:ENDED_SHOWN])
    return sorted(active + ended, key=lambda d: (d.created_at, d.pk), reverse=True)


def library_folders() -> list[tuple[str, list[ModelFile]]]:
    """The library's files by folder (folders in name order, files by name)."""
    files = ModelFile.objects.order_by("folder", "filename")
    return [(folder, list(group)) for folder, group in groupby(files, key=lambda f: f.folder)]


def panel_context(user) -> dict:
    staff = bool(user.is_staff)
    return {
        "rows": [Row(download, staff=staff) for download in recent_downloads()],
        "folders": library_folders(),
        "user": user,
    }


def render_panel(user) -> str:
    """Both live sections, for `user` (the downloads first: it is the hint's target)."""
    return render_to_string(f"{TEMPLATE}#live-sections", panel_context(user))


def _snapshot(user, key: str | None) -> topics.Snapshot:
    context = panel_context(user)
    return [
        (progress.TARGET, render_to_string(f"{TEMPLATE}#downloads-panel", context)),
        (LIBRARY_TARGET, render_to_string(f"{TEMPLATE}#library-panel", context)),
    ]


def _signed_in(user, key: str | None) -> bool:
    return key is None and user.is_authenticated and user.is_active


downloads_topic = topics.Topic(name=progress.TOPIC, allowed=_signed_in, snapshot=_snapshot)
