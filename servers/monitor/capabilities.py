"""What each server can run (S8): node classes and model files, cached with a TTL.

`/object_info` is ~0.5 MB, so it is fetched once per TTL, not on every check.
Every check of a healthy server consults the cache: a hit skips the fetch, a
miss (expired, never fetched, or invalidated because the server restarted)
fetches again. Hit/miss counts go into `ServerState.event_stats`. Each fetch
lasts a random 80-100 % of the TTL, so that a fleet read together (the monitor
started) is not read again all in the same minute.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from servers.comfyui import ComfyUIClient, SystemStats


@dataclass(frozen=True)
class Capabilities:
    node_classes: list[str]
    model_files: dict[str, list[str]]
    # The whole /object_info: input specs, for checking graphs without asking the server.
    object_info: dict[str, dict[str, Any]] = field(default_factory=dict)


async def fetch_capabilities(client: ComfyUIClient) -> Capabilities:
    """Node classes (keys of /object_info) and files of every /models folder."""
    object_info, folders = await asyncio.gather(client.object_info(), client.model_folders())
    files = await asyncio.gather(*(client.models(folder) for folder in folders))
    return Capabilities(
        node_classes=sorted(object_info),
        model_files={folder: sorted(names) for folder, names in zip(folders, files, strict=True)},
        object_info=object_info,
    )


def restart_signature(stats: SystemStats) -> tuple[object, ...]:
    """Fields of /system_stats that change when a different ComfyUI answers.

    An upgrade, a new device or a changed launch command all mean the node and
    model lists may have changed too.
    """
    argv = stats.raw.get("system", {}).get("argv")
    return (
        stats.comfyui_version,
        stats.python_version,
        tuple(argv) if isinstance(argv, list) else None,
        stats.ram_total,
        tuple((d.name, d.vram_total) for d in stats.devices),
    )


@dataclass
class _Entry:
    fetched_at: float | None = None
    signature: tuple[object, ...] | None = None
    hits: int = 0
    misses: int = 0
    lasts: float = 1.0  # the share of the TTL this fetch lasts


def _spread() -> float:
    return random.uniform(0.8, 1.0)  # noqa: S311 - spreading, not secrecy


class CapabilityCache:
    """Freshness bookkeeping per server; the lists themselves live in ServerState."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        spread: Callable[[], float] = _spread,
    ) -> None:
        self._clock = clock
        self._spread = spread
        self._entries: dict[int, _Entry] = {}

    def _entry(self, server_id: int) -> _Entry:
        return self._entries.setdefault(server_id, _Entry())

    def lookup(self, server_id: int, ttl: float, stats: SystemStats | None = None) -> bool:
        """True (a hit) if the cached capabilities are still good; counts the lookup."""
        entry = self._entry(server_id)
        if stats is not None:
            signature = restart_signature(stats)
            if entry.signature is not None and signature != entry.signature:
                entry.fetched_at = None
            entry.signature = signature
        age = None if entry.fetched_at is None else self._clock() - entry.fetched_at
        fresh = age is not None and age < ttl * entry.lasts
        if fresh:
            entry.hits += 1
        else:
            entry.misses += 1
        return fresh

    def stored(self, server_id: int) -> None:
        entry = self._entry(server_id)
        entry.fetched_at, entry.lasts = self._clock(), self._spread()

    def invalidate(self, server_id: int) -> None:
        """The server restarted (or came back): fetch again on the next check."""
        self._entry(server_id).fetched_at = None

    def forget(self, server_id: int) -> None:
        self._entries.pop(server_id, None)

    def counts(self, server_id: int) -> dict[str, float | int]:
        entry = self._entry(server_id)
        total = entry.hits + entry.misses
        return {
            "hits": entry.hits,
            "misses": entry.misses,
            "hit_rate": round(entry.hits / total, 3) if total else 0.0,
        }
