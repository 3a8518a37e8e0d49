"""Tell browsers about a server only when something they can see changed (B8).

The fingerprint holds exactly what the server row and the dashboard panel
show, rounded as they show it, so a check that changes nothing visible (a new
`last_checked_at`, VRAM moving by a few MB) sends nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from channels.db import database_sync_to_async

from servers import status_panel
from servers.models import FailureRecord, ServerState

logger = logging.getLogger(__name__)

type Fingerprint = tuple[Any, ...]
type VisibleChangeHook = Callable[[int], None]

GB = 1024**3


def _gb(value: int | None) -> float | None:
    return None if value is None else round(value / GB, 1)


def visible_fingerprint(server_id: int, affinity_window: float = 30.0) -> Fingerprint | None:
    """Sync (ORM): what the status row shows of this server; None if it is gone."""
    state = (
        ServerState.objects.filter(server_id=server_id)
        .values(
            "health",
            "queue_running",
            "queue_pending",
            "queue_source",
            "inflight",
            "vram_total",
            "vram_free",
            "last_affinity_key",
            "last_affinity_at",
            "comfyui_version",
            "event_stats",
        )
        .first()
    )
    if state is None:
        return None
    last_failure = (
        FailureRecord.objects.filter(server_id=server_id)
        .values_list("pk", "recovered_at")
        .first()  # ordered newest first
    )
    rate = (state["event_stats"] or {}).get("events_per_second")
    # The row shows the affinity only while it lasts: its expiry is a visible change.
    affinity = ServerState(
        last_affinity_key=state["last_affinity_key"], last_affinity_at=state["last_affinity_at"]
    ).affinity_key(timedelta(seconds=affinity_window))
    return (
        state["health"],
        state["queue_running"],
        state["queue_pending"],
        state["queue_source"],
        state["inflight"],
        _gb(state["vram_total"]),
        _gb(state["vram_free"]),
        affinity,
        state["comfyui_version"],
        None if rate is None else round(float(rate), 1),
        last_failure,
    )


def publish_server_status(server_id: int) -> None:
    """The default hook: `servers.status_panel.publish_server`."""
    status_panel.publish_server(server_id)


class ChangePublisher:
    """Remembers each server's last published fingerprint; publishes on change."""

    def __init__(self, hook: VisibleChangeHook | None = None) -> None:
        self._hook = hook or publish_server_status
        self._last: dict[int, Fingerprint] = {}

    async def refresh(self, server_id: int, *, affinity_window: float = 30.0) -> bool:
        """Publish if what browsers see of this server changed; True if it did."""
        fingerprint = await database_sync_to_async(visible_fingerprint)(server_id, affinity_window)
        if fingerprint is None or self._last.get(server_id) == fingerprint:
            return False
        self._last[server_id] = fingerprint
        try:
            await database_sync_to_async(self._hook)(server_id)
        except Exception:
            # A broken template must not stop the monitor from watching servers.
            logger.exception("publishing the status of server %s failed", server_id)
        return True

    def forget(self, server_id: int) -> None:
        self._last.pop(server_id, None)
