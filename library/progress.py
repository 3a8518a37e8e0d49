"""Downloads, as browsers and API clients see them: the one summary of a download
(never its headers) and its live updates on the "downloads" topic.

The downloader calls `publish_progress()` at most twice a second per download
and on every change of state. Until the library's pages exist there is no panel
to refresh, so the update is typed JSON (`live.publish_data`, event
"download.progress"): the API's event streams carry it and browsers ignore it.
The pages' author adds a refresh hint here (`live.publish_refresh`) and a
snapshot to the topic.
"""

from __future__ import annotations

from typing import TypedDict

from comfyweb import live, topics
from library.models import Download

TOPIC = "downloads"
EVENT = "download.progress"


class DownloadSummary(TypedDict):
    """What anyone may see of a download. Not its headers; not its URL, whose query
    string may hold a signed token (the pages show it to the people who may see it)."""

    id: int
    folder: str
    filename: str
    state: str
    size: int | None
    downloaded: int
    speed_bps: int
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


def summary(download: Download) -> DownloadSummary:
    return {
        "id": download.pk,
        "folder": download.folder,
        "filename": download.filename,
        "state": download.state,
        "size": download.size,
        "downloaded": download.downloaded,
        "speed_bps": download.speed_bps,
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
    """Tell browsers and event streams where `download` stands (best effort)."""
    live.publish_data(TOPIC, EVENT, summary(download))


def _signed_in(user, key: str | None) -> bool:
    return key is None and user.is_authenticated and user.is_active


downloads_topic = topics.Topic(name=TOPIC, allowed=_signed_in, snapshot=lambda user, key: [])
