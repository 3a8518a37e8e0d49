"""The monitors' heartbeats in Redis, and the `/healthz` check that reads them (S9).

Many monitors may run at once (issue 17: they split the fleet by lease), so each
beats under its own monitor id: one field of one Redis hash, holding when it beat
and when that beat expires. A reader drops the fields whose beat expired (three
missed beats), so a monitor that died or hangs shows up as gone within seconds
without anyone having to clean up after it. A hash rather than one key per monitor:
readers list every monitor with one HGETALL, never a SCAN over the keyspace.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
import uuid
from typing import Any

import redis
from django.conf import settings

from comfyweb.health import ComponentHealth, redis_client

KEY = "comfyweb:monitors"
MISSED_BEATS = 3


def new_monitor_id() -> str:
    """`COMFYWEB_MONITOR_ID` if set; else unique per process start, readable in the
    panel: host, pid and a random tail (a pid is reused after a restart, and
    containers all have pid 1)."""
    if settings.COMFYWEB_MONITOR_ID:
        return settings.COMFYWEB_MONITOR_ID
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class MonitorIdInUse(Exception):
    """Another process beats under this monitor's configured id."""


def ensure_id_unused(monitor_id: str, pause=time.sleep) -> None:
    """Sync: refuse a configured id another live process uses. A beat under it from
    another process may be its predecessor's, killed without clearing it: that one
    beats no more, so its beat is read again after one and a half of its intervals."""
    beat = _beat_of(monitor_id)
    if beat is None or _same_process(beat) or _gone_from_this_host(beat):
        return
    interval = max(0.5, (float(beat["expires"]) - float(beat["at"])) / MISSED_BEATS)
    pause(interval * 1.5)
    again = _beat_of(monitor_id)
    if again is not None and float(again["at"]) != float(beat["at"]):
        raise MonitorIdInUse(
            f"monitor id {monitor_id!r} is in use by pid {again.get('pid')} on "
            f"{again.get('host')}: give each monitor its own COMFYWEB_MONITOR_ID"
        )


def _beat_of(monitor_id: str) -> dict[str, Any] | None:
    client = redis_client()
    try:
        raw = client.hget(KEY, monitor_id)
    finally:
        client.close()
    beat = _parse(raw) if raw else None
    if beat is None or float(beat.get("expires", 0)) < time.time():
        return None
    return beat


def _same_process(beat: dict[str, Any]) -> bool:
    return beat.get("pid") == os.getpid() and beat.get("host") == socket.gethostname()


def _gone_from_this_host(beat: dict[str, Any]) -> bool:
    """A beat of this host whose process is gone: no need to wait for it."""
    if beat.get("host") != socket.gethostname() or not isinstance(beat.get("pid"), int):
        return False
    try:
        os.kill(beat["pid"], 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, another user's
        return False
    return False


def beat_value(
    monitor_id: str, servers: int, interval: float, leases: int | None = None
) -> dict[str, Any]:
    """`leases`: the servers it leases (`leases.py`); the others size their shares by it."""
    now = time.time()
    return {
        "id": monitor_id,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "at": now,
        "expires": now + max(1.0, MISSED_BEATS * interval),
        "servers": servers,
        "leases": leases,
    }


def store_beat(value: dict[str, Any]) -> None:
    client = redis_client()
    try:
        client.hset(KEY, value["id"], json.dumps(value))
    finally:
        client.close()


def remove_beat(monitor_id: str) -> None:
    client = redis_client()
    try:
        client.hdel(KEY, monitor_id)
    finally:
        client.close()


async def write_heartbeat(
    monitor_id: str, servers: int, interval: float, leases: int | None = None
) -> None:
    await asyncio.to_thread(store_beat, beat_value(monitor_id, servers, interval, leases))


async def clear_heartbeat(monitor_id: str) -> None:
    await asyncio.to_thread(remove_beat, monitor_id)


def read_heartbeats(now: float | None = None) -> list[dict[str, Any]]:
    """Every monitor whose beat has not expired, oldest id first; expired ones are
    removed on the way (any reader may: removing a dead monitor twice is harmless)."""
    now = time.time() if now is None else now
    client = redis_client()
    try:
        with client.pipeline() as pipe:
            # Watched: a monitor that beats again between the read and the removal
            # must not lose its fresh beat; the removal is then left to a later read.
            pipe.watch(KEY)
            alive, expired = [], []
            for field, raw in pipe.hgetall(KEY).items():
                beat = _parse(raw)
                if beat is None or float(beat.get("expires", 0)) < now:
                    expired.append(field)
                else:
                    alive.append(beat | {"age_s": round(max(0.0, now - float(beat["at"])), 1)})
            if expired:
                with contextlib.suppress(redis.WatchError):
                    pipe.multi()
                    pipe.hdel(KEY, *expired)
                    pipe.execute()
    finally:
        client.close()
    return sorted(alive, key=lambda beat: str(beat.get("id")))


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) and "at" in value else None


def check_monitor() -> ComponentHealth:
    """`comfyweb.health` check: ok while at least one monitor's heartbeat is in Redis."""
    started = time.perf_counter()
    try:
        beats = read_heartbeats()
    except Exception as error:  # an unreachable Redis is reported, never raised
        elapsed = (time.perf_counter() - started) * 1000
        return ComponentHealth("monitor", False, f"{type(error).__name__}: {error}"[:200], elapsed)
    elapsed = (time.perf_counter() - started) * 1000
    if not beats:
        return ComponentHealth("monitor", False, "MonitorMissing: no monitor heartbeat", elapsed)
    servers = sum(int(beat.get("servers", 0)) for beat in beats)
    monitors = [_listed(beat) for beat in beats]
    youngest = min(beat["age_s"] for beat in beats)
    detail = f"{len(beats)} monitor(s), watching {servers} server(s), beat {youngest:.1f}s ago"
    return ComponentHealth(
        "monitor", True, detail, elapsed, {"servers": servers, "monitors": monitors}
    )


def _listed(beat: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "host", "pid", "servers", "leases", "age_s")
    return {key: beat.get(key) for key in keys}
