"""Writes of what the monitor observed into `ServerState` and `FailureRecord` (B4, B5).

All functions are sync (ORM) and run through `database_sync_to_async`. Every
write is a `filter(...).update(...)` of the fields the monitor owns, so the web
process and dispatch (which write `inflight`, `last_used_at`, the affinity) are
never overwritten with stale copies.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import OperationalError, transaction
from django.db.models import F
from django.utils import timezone

from servers import catalogues
from servers.models import FailureKind, FailureRecord, Health, ServerState

from .checks import CheckOutcome
from .tunables import Tunables

logger = logging.getLogger(__name__)

# Milliseconds the routine stamps wait for a row lock (PostgreSQL's deadlock check: 1 s).
ROUTINE_LOCK_TIMEOUT = 100
LOCK_NOT_AVAILABLE = "55P03"


@dataclass(frozen=True)
class Transition:
    """What a check did to a server's health, for logging and scheduling."""

    before: str
    after: str
    consecutive_failures: int

    @property
    def marked_unhealthy(self) -> bool:
        return self.after == Health.UNHEALTHY and self.before != Health.UNHEALTHY

    @property
    def readmitted(self) -> bool:
        return self.before == Health.UNHEALTHY and self.after == Health.HEALTHY


def _close_open(server_id: int, now: datetime, kinds: tuple[str, ...] | None = None) -> int:
    records = FailureRecord.objects.filter(server_id=server_id, recovered_at__isnull=True)
    if kinds is not None:
        records = records.filter(kind__in=kinds)
    return records.update(recovered_at=now)


def system_fields(outcome: CheckOutcome) -> dict[str, Any]:
    """Pure: what a healthy check's /system_stats says (version, device, VRAM)."""
    stats = outcome.stats
    assert stats is not None
    fields: dict[str, Any] = {"comfyui_version": (stats.comfyui_version or "")[:40]}
    if stats.devices:
        device = stats.devices[0]  # ComfyUI runs prompts on its first device
        fields |= {
            "device_name": device.name[:200],
            "vram_total": device.vram_total,
            "vram_free": device.vram_free,
        }
    return fields


def load_fields(
    outcome: CheckOutcome, queue_remaining: int | None, own_client_id: str | None
) -> dict[str, Any]:
    """Pure: the server's own load as a check found it (B1)."""
    if outcome.queue is not None:
        # The balancer adds our in-flight prompts to the server's queue, so the
        # queue counted here is everybody else's: our own prompts would count twice.
        # Ours carry the server's client id, or it with a monitor's tail
        # (`servers.models.leased_client_id`): any monitor's that leased it.
        def ours(client_id: str | None) -> bool:
            return own_client_id is not None and (
                client_id == own_client_id or (client_id or "").startswith(f"{own_client_id}-")
            )

        def others(items) -> int:
            return sum(1 for item in items if not ours(item.client_id))

        return {
            "queue_running": others(outcome.queue.running),
            "queue_pending": others(outcome.queue.pending),
            "queue_source": "queue",
        }
    # B1: /queue failed but the server answers /system_stats, so it stays a
    # candidate. /system_stats carries no queue, so the load comes from the last
    # `status` event of our socket (ComfyUI's queue_remaining: running + pending);
    # without one, the previous counts stand.
    fields: dict[str, Any] = {"queue_source": "system_stats"}
    if queue_remaining is not None:
        running = min(1, queue_remaining)
        fields |= {"queue_running": running, "queue_pending": queue_remaining - running}
    return fields


def _queue_fields(
    server_id: int,
    outcome: CheckOutcome,
    now: datetime,
    queue_remaining: int | None,
    own_client_id: str | None,
) -> dict[str, Any]:
    if outcome.queue is not None:
        _close_open(server_id, now, (FailureKind.QUEUE,))
    else:
        FailureRecord.objects.create(
            server_id=server_id, at=now, kind=FailureKind.QUEUE, reason=outcome.queue_error or "?"
        )
    return load_fields(outcome, queue_remaining, own_client_id) | {"load_checked_at": now}


def record_success(
    server_id: int,
    outcome: CheckOutcome,
    *,
    next_check_at: datetime,
    queue_remaining: int | None = None,
    own_client_id: str | None = None,
    now: datetime | None = None,
) -> Transition:
    """The server answered /system_stats: healthy, and re-admitted if it was not."""
    now = now or timezone.now()
    with transaction.atomic():
        before_health = (
            ServerState.objects.filter(server_id=server_id).values_list("health", flat=True).first()
        )
        if before_health is None:  # deleted since the check started
            return Transition(Health.UNKNOWN, Health.UNKNOWN, 0)
        fields = {
            "health": Health.HEALTHY,
            "last_checked_at": now,
            "last_healthy_at": now,
            "unhealthy_since": None,
            "next_check_at": next_check_at,
            "consecutive_failures": 0,
            "response_ms": outcome.response_ms,
        }
        fields |= system_fields(outcome)
        # Re-admission closes every open record (the history shows when it healed);
        # a healthy check closes the failed health checks that did not tip it over.
        _close_open(
            server_id, now, None if before_health == Health.UNHEALTHY else (FailureKind.HEALTH,)
        )
        fields |= _queue_fields(server_id, outcome, now, queue_remaining, own_client_id)
        ServerState.objects.filter(server_id=server_id).update(**fields)
    return Transition(before_health, Health.HEALTHY, 0)


def record_failure(
    server_id: int, reason: str, tunables: Tunables, *, now: datetime | None = None
) -> Transition:
    """A failed health check; the n-th in a row marks the server unhealthy and unlocks it."""
    now = now or timezone.now()
    with transaction.atomic():
        states = ServerState.objects.filter(server_id=server_id)
        states.update(consecutive_failures=F("consecutive_failures") + 1, last_checked_at=now)
        row = states.values("health", "consecutive_failures").first()
        if row is None:  # the server was deleted under us
            return Transition(Health.UNKNOWN, Health.UNKNOWN, 0)
        before, failures = row["health"], row["consecutive_failures"]
        mark = before != Health.UNHEALTHY and failures >= tunables.failures_before_unhealthy
        FailureRecord.objects.create(
            server_id=server_id,
            at=now,
            kind=FailureKind.HEALTH,
            reason=reason[:2000],
            marked_unhealthy=mark,
        )
        if mark:
            # B5: end the affinity so the balancer does not keep steering the
            # workflow at a dead server.
            states.update(
                health=Health.UNHEALTHY,
                unhealthy_since=now,
                response_ms=None,
                last_affinity_key="",
                last_affinity_at=None,
            )
    return Transition(before, Health.UNHEALTHY if mark else before, failures)


def set_next_check(server_id: int, at: datetime) -> None:
    ServerState.objects.filter(server_id=server_id).update(next_check_at=at)


def record_stream_drop(server_id: int, reason: str, *, now: datetime | None = None) -> None:
    # The socket also drops when the server was just deleted: nothing to record then.
    if ServerState.objects.filter(server_id=server_id).exists():
        FailureRecord.objects.create(
            server_id=server_id, at=now or timezone.now(), kind=FailureKind.STREAM, reason=reason
        )


def record_stream_back(server_id: int, *, now: datetime | None = None) -> None:
    _close_open(server_id, now or timezone.now(), (FailureKind.STREAM,))


def write_capabilities(
    server_id: int,
    node_classes: list[str],
    model_files: dict[str, list[str]],
    at: datetime,
    object_info: dict[str, Any] | None = None,
) -> None:
    if object_info is not None:
        # First, so that once capabilities_at says "known" the input specs are there too.
        catalogues.store(server_id, object_info)
    ServerState.objects.filter(server_id=server_id).update(
        node_classes=node_classes, model_files=model_files, capabilities_at=at
    )


def _lock_timeout(milliseconds: int) -> None:
    """For the rest of the current transaction (PostgreSQL; elsewhere a no-op)."""
    connection = transaction.get_connection()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL lock_timeout = {int(milliseconds)}")


def write_event_stats(server_id: int, stats: dict[str, Any]) -> None:
    ServerState.objects.filter(server_id=server_id).update(event_stats=stats)


def write_event_stats_many(stats: Mapping[int, dict[str, Any]]) -> None:
    """Several servers' event statistics, each in its own statement and commit: a
    transaction holding many rows would deadlock with dispatch, whose claims lock
    several servers' rows at once."""
    for server_id, value in stats.items():
        write_event_stats(server_id, value)


@dataclass(frozen=True)
class RoutineCheck:
    """A healthy check that found what the last one written did: only its times are new."""

    at: datetime  # whole seconds: checks of one tick share a few values, and one UPDATE each
    next_check_in: float
    response_ms: float | None  # whole milliseconds, as pages show it

    @classmethod
    def of(cls, at: datetime, next_check_in: float, response_ms: float | None) -> RoutineCheck:
        whole = None if response_ms is None else float(round(response_ms))
        return cls(at.replace(microsecond=0), next_check_in, whole)


def write_routine_checks(checks: Mapping[int, RoutineCheck]) -> set[int]:
    """Stamp routine checks, one UPDATE per distinct (time, delay, response time).

    Only servers still healthy are stamped. Returns the servers that were not:
    marked unhealthy or unknown by another process since (a container or local
    instance gone), or deleted; their next check must be written in full.

    The stamps wait at most `ROUTINE_LOCK_TIMEOUT` for a row another transaction
    holds (dispatch's claims lock several servers' rows at once; this holds many
    too): rather than deadlock with it, they give up, and the next checks stamp.
    """
    groups: dict[RoutineCheck, list[int]] = defaultdict(list)
    for server_id, check in checks.items():
        groups[check].append(server_id)
    updated = 0
    try:
        with transaction.atomic():
            _lock_timeout(ROUTINE_LOCK_TIMEOUT)
            for check, server_ids in groups.items():
                updated += ServerState.objects.filter(
                    server_id__in=server_ids, health=Health.HEALTHY
                ).update(
                    last_checked_at=check.at,
                    last_healthy_at=check.at,
                    load_checked_at=check.at,
                    next_check_at=check.at + timedelta(seconds=check.next_check_in),
                    response_ms=check.response_ms,
                )
    except OperationalError as error:
        if getattr(error.__cause__, "sqlstate", None) != LOCK_NOT_AVAILABLE:
            raise
        logger.info("routine checks of %d servers not stamped: rows busy", len(checks))
        return set()
    if updated == len(checks):
        return set()
    healthy = ServerState.objects.filter(server_id__in=list(checks), health=Health.HEALTHY)
    return set(checks) - set(healthy.values_list("server_id", flat=True))
