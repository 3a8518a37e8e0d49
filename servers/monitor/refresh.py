"""Asking the monitor to read servers' model lists again now, not when the TTL ends.

Another process (the worker, once a model download is in the library) calls
`request_models_refresh(server_ids)`, which stamps each server's key in Redis.
The monitor compares the stamps of the servers it watches with the ones it saw
on its previous tick; a new stamp drops that server's cached capabilities and
runs its check at once, which fetches them again. The first stamp seen of a
server is only noted: a monitor (or a watcher) that just started fetches them
anyway.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from django.core.cache import cache

KEY = "comfyweb:monitor:refresh-models:{}"
# A monitor that is down this long fetches everything when it starts anyway.
TTL = 3600


def request_models_refresh(server_ids: Iterable[int]) -> None:
    """Sync, for any process: have the monitor refetch these servers' capabilities."""
    stamp = uuid.uuid4().hex
    keys = {KEY.format(server_id): stamp for server_id in server_ids}
    if keys:
        cache.set_many(keys, timeout=TTL)


class RefreshRequests:
    """The monitor's side: which watched servers were asked about since last time."""

    def __init__(self) -> None:
        self._seen: dict[int, str | None] = {}

    async def due(self, server_ids: Iterable[int]) -> list[int]:
        ids = list(server_ids)
        stamps = await cache.aget_many([KEY.format(server_id) for server_id in ids])
        due = []
        seen: dict[int, str | None] = {}
        for server_id in ids:
            stamp = stamps.get(KEY.format(server_id))
            if server_id in self._seen and stamp != self._seen[server_id]:
                due.append(server_id)
            seen[server_id] = stamp
        self._seen = seen
        return due
