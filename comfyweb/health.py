"""Health of every component ComfyWeb depends on (product item S9).

Each check is a small function returning a `ComponentHealth`; `collect()` runs
them all. `/healthz`, the dashboard panel and (later) the API report the same
`HealthReport`. Apps add checks with `register()` (the monitor does, in its issue).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
from django.conf import settings
from django.db import connection

type Check = Callable[[], "ComponentHealth"]


@dataclass(frozen=True)
class ComponentHealth:
    name: str
    ok: bool
    detail: str
    latency_ms: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"ok": self.ok, "detail": self.detail}
        if self.latency_ms is not None:
            data["latency_ms"] = round(self.latency_ms, 1)
        return data | self.extra


@dataclass(frozen=True)
class HealthReport:
    components: tuple[ComponentHealth, ...]

    @property
    def ok(self) -> bool:
        return all(component.ok for component in self.components)

    @property
    def status(self) -> str:
        return "ok" if self.ok else "degraded"

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "components": {c.name: c.as_json() for c in self.components},
        }


def _timed(name: str, probe: Callable[[], tuple[str, dict[str, Any]]]) -> ComponentHealth:
    """Run `probe`; any exception becomes an unhealthy component, never a 500."""
    started = time.perf_counter()
    try:
        detail, extra = probe()
    except Exception as error:
        elapsed = (time.perf_counter() - started) * 1000
        return ComponentHealth(name, False, _describe(error), elapsed)
    return ComponentHealth(name, True, detail, (time.perf_counter() - started) * 1000, extra)


def _describe(error: Exception) -> str:
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {message}"[:200] if message else type(error).__name__


def check_database() -> ComponentHealth:
    def probe() -> tuple[str, dict[str, Any]]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return connection.vendor, {}

    return _timed("database", probe)


def redis_client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)


def check_redis() -> ComponentHealth:
    def probe() -> tuple[str, dict[str, Any]]:
        client = redis_client()
        try:
            client.ping()
        finally:
            client.close()
        return ("embedded" if settings.EMBEDDED_REDIS else "external"), {}

    return _timed("redis", probe)


def check_worker() -> ComponentHealth:
    """django-q2 clusters refresh a stat key in Redis every half second (3 s expiry);
    every cluster alive is listed, whichever machine it runs on."""

    def probe() -> tuple[str, dict[str, Any]]:
        clusters = worker_clusters()
        if not clusters:
            raise WorkerMissing("no worker cluster heartbeat")
        workers = sum(cluster["workers"] for cluster in clusters)
        return f"{len(clusters)} cluster(s), {workers} worker(s)", {
            "clusters": clusters,
            "workers": workers,
        }

    return _timed("worker", probe)


def worker_clusters() -> list[dict[str, Any]]:
    """The running qclusters, from django-q2's own stat keys: id, host, pid, state,
    workers and the age of the last heartbeat."""
    from django.utils import timezone
    from django_q.brokers import get_broker
    from django_q.status import Stat

    broker = get_broker()
    try:
        stats = [stat for stat in Stat.get_all(broker) if stat.status != "Stopped"]
    finally:
        broker.connection.close()
    now = timezone.now()
    clusters = [
        {
            "id": str(stat.cluster_id),
            "host": stat.host,
            "pid": stat.pid,
            "status": stat.status,
            "workers": len(stat.workers),
            "age_s": round(max(0.0, (now - stat.timestamp).total_seconds()), 1),
        }
        for stat in stats
    ]
    return sorted(clusters, key=lambda cluster: cluster["id"])


class WorkerMissing(RuntimeError):
    pass


_checks: list[Check] = [check_database, check_redis, check_worker]


def register(check: Check) -> None:
    if check not in _checks:
        _checks.append(check)


def collect() -> HealthReport:
    return HealthReport(tuple(check() for check in _checks))
