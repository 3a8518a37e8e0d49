"""Downloads, as browsers and API clients see them: the one summary of a download
(never its headers) and its live updates on the "downloads" topic.

The downloader calls `publish_progress()` at most twice a second per download
and on every change of state (requests call it on asking, cancelling and
retrying). Each call sends two things on the topic:

- typed JSON (`live.publish_data`, event "download.progress"): the API's event
  streams carry it and browsers ignore it;
- a refresh hint for the Downloads page's panel (`live.publish_refresh`): the
  panel differs per user (staff see the full URL and the Cancel/Retry buttons), so
  each browser fetches its own (`library:downloads_panel`, `library/panel.py`),
  at most once a second however many hints arrive (static/js/live.js). A hint is
  never dropped here: the one after a download's last change must arrive.
"""

from __future__ import annotations

from typing import TypedDict
from urllib.parse import urlsplit, urlunsplit

from django.urls import reverse

from comfyweb import live
from library.models import Download, DownloadState

TOPIC = "downloads"
EVENT = "download.progress"
# The element the Downloads page's live panel replaces (library/panel.py renders it).
TARGET = "downloads-panel"


class DownloadSummary(TypedDict):
    """What anyone may see of a download. Not its headers; not its URL, whose query
    string may hold a signed token (`shown_url` gives each reader what they may see)."""

    id: int
    folder: str
    filename: str
    state: str
    size: int | None
    downloaded: int
    fraction: float | None  # downloaded / size; None while the size is unknown
    speed_bps: int
    eta_seconds: float | None  # remaining / speed while running; else None
    connections: int  # requested
    active_connections: int
    expected_sha256: str
    sha256: str
    error: str
    created_at: str
    started_at: str | None
    finished_at: str | None


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def fraction(download: Download) -> float | None:
    """How much is fetched, 0..1; None while the size is unknown (1 once completed)."""
    if download.state == DownloadState.COMPLETED:
        return 1.0
    if not download.size:
        return None
    return round(min(download.downloaded / download.size, 1.0), 4)


def eta_seconds(download: Download) -> float | None:
    """Seconds left at the current speed: only while running with a known size."""
    if download.state != DownloadState.RUNNING or not download.size or download.speed_bps <= 0:
        return None
    return round(max(download.size - download.downloaded, 0) / download.speed_bps, 1)


def shown_url(url: str, *, full: bool) -> str:
    """The URL as a reader may see it: in full (staff, who ask for downloads), else
    without the credentials and query string a signed or tokened URL carries."""
    if full:
        return url
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return ""
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def summary(download: Download) -> DownloadSummary:
    return {
        "id": download.pk,
        "folder": download.folder,
        "filename": download.filename,
        "state": download.state,
        "size": download.size,
        "downloaded": download.downloaded,
        "fraction": fraction(download),
        "speed_bps": download.speed_bps,
        "eta_seconds": eta_seconds(download),
        "connections": download.connections,
        "active_connections": download.active_connections,
        "expected_sha256": download.expected_sha256,
        "sha256": download.sha256,
        "error": download.error,
        "created_at": download.created_at.isoformat(),
        "started_at": _iso(download.started_at),
        "finished_at": _iso(download.finished_at),
    }


def publish_progress(download: Download) -> None:
    """Tell event streams where `download` stands and the Downloads pages to fetch
    their panel again (best effort: `comfyweb.live` never raises)."""
    live.publish_data(TOPIC, EVENT, summary(download))
    live.publish_refresh(TOPIC, TARGET, reverse("library:downloads_panel"))
