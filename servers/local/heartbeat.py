"""The launcher's heartbeat in Redis, and the `/healthz` check that reads it.

Like the monitor's (`servers/monitor/heartbeat.py`): the key expires after three
missed beats. A deployment with no local instance needs no launcher, so then the
check is ok without one; with instances, a missing launcher is a failing component.
"""

from __future__ import annotations

import os
import time

from django.core.cache import cache

from comfyweb.health import ComponentHealth
from servers.local.models import LocalInstance

KEY = "comfyweb:launcher:heartbeat"
MISSED_BEATS = 3


def write_heartbeat(children: int, interval: float) -> None:
    value = {"pid": os.getpid(), "at": time.time(), "children": children}
    cache.set(KEY, value, timeout=max(1.0, MISSED_BEATS * interval))


def clear_heartbeat() -> None:
    cache.delete(KEY)


def check_launcher() -> ComponentHealth:
    """`comfyweb.health` check: ok while a launcher beats, or while nothing needs one."""
    started = time.perf_counter()
    try:
        beat = cache.get(KEY)
        instances = LocalInstance.objects.count()
    except Exception as error:  # an unreachable Redis or database is reported, never raised
        elapsed = (time.perf_counter() - started) * 1000
        return ComponentHealth("launcher", False, f"{type(error).__name__}: {error}"[:200], elapsed)
    elapsed = (time.perf_counter() - started) * 1000
    if not isinstance(beat, dict):
        if instances:
            detail = f"LauncherMissing: no launcher heartbeat ({instances} local instance(s))"
            return ComponentHealth("launcher", False, detail, elapsed)
        return ComponentHealth("launcher", True, "no local instances", elapsed, {"children": 0})
    age = max(0.0, time.time() - float(beat.get("at", 0)))
    children = int(beat.get("children", 0))
    detail = f"pid {beat.get('pid')}, {children} process(es), beat {age:.1f}s ago"
    return ComponentHealth("launcher", True, detail, elapsed, {"children": children})
