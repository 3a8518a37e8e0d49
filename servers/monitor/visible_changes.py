"""Tell browsers about a server only when something they can see changed (B8).

The fingerprint holds exactly what the server row and the dashboard panel
show, rounded as they show it, so a check that changes nothing visible (a new
`last_checked_at`, VRAM moving by a few MB) sends nothing. The monitor reads the
fingerprints of its whole fleet in one query a tick (`refresh_many`) and
publishes the servers that changed together, so the cost of a tick grows with
the servers that changed, not with the fleet; a check that changed a server's
state has it looked at within `BATCH_DELAY` (`soon`), with whatever else
changed meanwhile (a fleet that starts or fails together is one publication).

The event rate is a 10-second average: a server whose only change is its rate
is published at most once per `RATE_INTERVAL`, so a fleet streaming progress
does not re-render its rows every tick for a figure that moves by 0.1.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Iterable
from datetime import datetime, timedelta
from typing import Any

from channels.db import database_sync_to_async
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from servers import status_panel
from servers.balancer import affinity_key
from servers.models import FailureRecord, ServerState

logger = logging.getLogger(__name__)

type Fingerprint = tuple[Any, ...]
type VisibleChangeHook = Callable[[int], None]

GB = 1024**3
# Seconds between publications of a server whose only visible change is its event rate.
RATE_INTERVAL = 10.0
# Seconds a change waits for others to be published with it.
BATCH_DELAY = 0.1
FIELDS = (
    "server_id",
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
)


def gigabytes(value: int | None) -> float | None:
    """Bytes as pages show them (one decimal of GB): smaller moves are not visible."""
    return None if value is None else round(value / GB, 1)


def visible_fingerprints(
    server_ids: Iterable[int], affinity_window: float = 30.0
) -> dict[int, Fingerprint]:
    """Sync (ORM), one query: what the status rows show of these servers (gone ones left out)."""
    latest = FailureRecord.objects.filter(server_id=OuterRef("server_id")).order_by("-at", "-pk")
    rows = (
        ServerState.objects.filter(server_id__in=list(server_ids))
        .annotate(
            failure_pk=Subquery(latest.values("pk")[:1]),
            failure_recovered_at=Subquery(latest.values("recovered_at")[:1]),
        )
        .values(*FIELDS, "failure_pk", "failure_recovered_at", "event_stats__events_per_second")
    )
    window, now = timedelta(seconds=affinity_window), timezone.now()
    return {row["server_id"]: _fingerprint(row, window, now) for row in rows}


def _fingerprint(row: dict[str, Any], window: timedelta, now: datetime) -> Fingerprint:
    rate = row["event_stats__events_per_second"]
    # The row shows the affinity only while it lasts: its expiry is a visible change.
    affinity = affinity_key(row["last_affinity_key"], row["last_affinity_at"], window, now)
    failure = row["failure_pk"]
    last_failure = None if failure is None else (failure, row["failure_recovered_at"])
    return (
        row["health"],
        row["queue_running"],
        row["queue_pending"],
        row["queue_source"],
        row["inflight"],
        gigabytes(row["vram_total"]),
        gigabytes(row["vram_free"]),
        affinity,
        row["comfyui_version"],
        last_failure,
        None if rate is None else round(float(rate), 1),  # last: see RATE_INTERVAL
    )


def visible_fingerprint(server_id: int, affinity_window: float = 30.0) -> Fingerprint | None:
    """Sync (ORM): what the status row shows of this server; None if it is gone."""
    return visible_fingerprints([server_id], affinity_window).get(server_id)


def publish_servers_status(server_ids: Collection[int]) -> None:
    """The default: `servers.status_panel.publish_servers`."""
    status_panel.publish_servers(server_ids)


class ChangePublisher:
    """Remembers each server's last published fingerprint; publishes on change.

    `hook` (tests) is called once per changed server; without one, the changed
    servers of one look are published together (`status_panel.publish_servers`).
    """

    def __init__(
        self, hook: VisibleChangeHook | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._publish: Callable[[Collection[int]], None] = (
            publish_servers_status if hook is None else lambda ids: [hook(sid) for sid in ids]
        )
        self._clock = clock
        self._last: dict[int, Fingerprint] = {}
        self._published_at: dict[int, float] = {}
        self._soon: set[int] = set()
        self._soon_task: asyncio.Task[None] | None = None

    async def refresh(self, server_id: int, *, affinity_window: float = 30.0) -> bool:
        """Publish if what browsers see of this server changed; True if it did."""
        return bool(await self.refresh_many([server_id], affinity_window=affinity_window))

    def soon(self, server_id: int, *, affinity_window: float = 30.0) -> None:
        """`refresh` this server within `BATCH_DELAY`, with the others asked meanwhile."""
        self._soon.add(server_id)
        if self._soon_task is None or self._soon_task.done():
            self._soon_task = asyncio.create_task(
                self._refresh_soon(affinity_window), name="monitor publish changes"
            )

    async def _refresh_soon(self, affinity_window: float) -> None:
        await asyncio.sleep(BATCH_DELAY)
        server_ids, self._soon = self._soon, set()
        try:
            await self.refresh_many(server_ids, affinity_window=affinity_window)
        except Exception:
            # The database is away: the monitor's next tick looks at every server.
            logger.exception("looking for visible changes of servers %s failed", server_ids)

    async def close(self) -> None:
        """Publish what is waiting (a shutdown must not swallow the last change)."""
        if self._soon_task is not None and not self._soon_task.done():
            await self._soon_task

    async def refresh_many(
        self, server_ids: Iterable[int], *, affinity_window: float = 30.0
    ) -> list[int]:
        """Publish the servers (of these) whose visible state changed; returns them."""
        fingerprints = await database_sync_to_async(visible_fingerprints)(
            server_ids, affinity_window
        )
        now = self._clock()
        changed = [sid for sid, fp in fingerprints.items() if self._due(sid, fp, now)]
        if not changed:
            return []
        for server_id in changed:
            self._last[server_id] = fingerprints[server_id]
            self._published_at[server_id] = now
        try:
            await database_sync_to_async(self._publish)(changed)
        except Exception:
            # A broken template must not stop the monitor from watching servers.
            logger.exception("publishing the status of servers %s failed", changed)
        return changed

    def _due(self, server_id: int, fingerprint: Fingerprint, now: float) -> bool:
        last = self._last.get(server_id)
        if last == fingerprint:
            return False
        if last is not None and last[:-1] == fingerprint[:-1]:  # only the event rate moved
            return now - self._published_at.get(server_id, 0.0) >= RATE_INTERVAL
        return True

    def forget(self, server_id: int) -> None:
        self._last.pop(server_id, None)
        self._published_at.pop(server_id, None)
