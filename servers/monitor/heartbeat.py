"""The monitor's heartbeat in Redis, and the `/healthz` check that reads it (S9).

The key expires after three missed beats, so a monitor that died (or hangs)
shows up as missing within seconds without anyone having to clean up.
"""

from __future__ import annotations

import os
import time
from typing import Any

from django.core.cache import cache

from comfyweb.health import ComponentHealth

KEY = "comfyweb:monitor:heartbeat"
MISSED_BEATS = 3


def beat_value(servers: int) -> dict[str, Any]:
    return {"pid": os.getpid(), "at": time.time(), "servers": servers}


async def write_heartbeat(servers: int, interval: float) -> None:
    await cache.aset(KEY, beat_value(servers), timeout=max(1.0, MISSED_BEATS * interval))


async def clear_heartbeat() -> None:
    await cache.adelete(KEY)


def read_heartbeat() -> dict[str, Any] | None:
    value = cache.get(KEY)
    return value if isinstance(value, dict) else None


def check_monitor() -> ComponentHealth:
    """`comfyweb.health` check: ok while a monitor's heartbeat is in Redis."""
    started = time.perf_counter()
    try:
        beat = read_heartbeat()
    except Exception as error:  # an unreachable Redis is reported, never raised
        elapsed = (time.perf_counter() - started) * 1000
        return ComponentHealth("monitor", False, f"{type(error).__name__}: {error}"[:200], elapsed)
    elapsed = (time.perf_counter() - started) * 1000
    if beat is None:
        return ComponentHealth("monitor", False, "MonitorMissing: no monitor heartbeat", elapsed)
    age = max(0.0, time.time() - float(beat.get("at", 0)))
    servers = int(beat.get("servers", 0))
    detail = f"pid {beat.get('pid')}, watching {servers} server(s), beat {age:.1f}s ago"
    return ComponentHealth("monitor", True, detail, elapsed, {"servers": servers})
