"""Placement (A4): which Docker host a pool's next container goes to, and its port and GPUs.

`reserve(pool)` picks, among the hosts the pool may use, an enabled one last seen
OK with the fewest containers that still has a free port in its range (and enough
free GPU ids when the pool asks for GPUs), and records the choice as a STARTING
`Container` row: its port and, as `GpuReservation` rows, its GPU ids.

Hosts whose status is still `unknown` (never checked) are not used: start-up
checks every host before it creates a container (A7), so an unchecked host is one
added since, and the next check decides. A container that fails on an engine we
never reached would only cost a start-up timeout and an error row.

The candidates' rows are locked (`select_for_update`, in pk order so two
reservations cannot deadlock) before what they hold is counted, and the row is
created in the same transaction: a concurrent reservation waits for the lock and
then counts this one. The database's unique constraints on (host, port) and
(host, GPU id) back this up (and are the only guard on SQLite, which has no row
locks): a reservation that loses a race there is tried again.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import IntegrityError, transaction

from servers.containers.models import (
    Container,
    ContainerPool,
    DockerHost,
    GpuReservation,
    HostStatus,
)

ATTEMPTS = 3  # a lost race on a unique constraint is retried this many times in all


class NoPlacement(Exception):
    """No host can take the pool's next container; `reasons` says why, per host name."""

    def __init__(self, pool: ContainerPool, reasons: dict[str, str]) -> None:
        self.pool = pool
        self.reasons = reasons
        why = "; ".join(f"{name}: {reason}" for name, reason in reasons.items())
        super().__init__(f"No Docker host can take a container of pool {pool.name}: {why}")


@dataclass(frozen=True)
class Fit:
    host: DockerHost
    held: int  # containers holding a port there
    port: int
    gpus: list[str]


def reserve(pool: ContainerPool) -> Container:
    """A new STARTING container of `pool`, its host, port and GPU ids reserved.

    Raises NoPlacement naming each host's reason when none fits.
    """
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with transaction.atomic():
                return _reserve(pool)
        except IntegrityError:
            if attempt == ATTEMPTS:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _reserve(pool: ContainerPool) -> Container:
    if not pool.enabled:
        raise NoPlacement(pool, {"(pool)": "the pool is disabled"})
    hosts = list(pool.usable_hosts().select_for_update().order_by("pk"))
    if not hosts:
        raise NoPlacement(pool, {"(pool)": "no Docker host is configured"})
    fits, reasons = [], {}
    for host in hosts:
        fit, reason = _fit(host, pool.gpus_per_container)
        if fit is None:
            reasons[host.name] = reason
        else:
            fits.append(fit)
    if not fits:
        raise NoPlacement(pool, reasons)
    best = min(fits, key=lambda fit: (fit.held, fit.host.name))
    container = Container.objects.create(pool=pool, host=best.host, port=best.port, gpus=best.gpus)
    GpuReservation.objects.bulk_create(
        GpuReservation(host=best.host, device_id=gpu, container=container) for gpu in best.gpus
    )
    return container


def _fit(host: DockerHost, gpus_needed: int) -> tuple[Fit | None, str]:
    """Where on `host` a container would go, or why it cannot."""
    if not host.enabled:
        return None, "disabled"
    if host.status == HostStatus.UNREACHABLE:
        return None, f"unreachable ({host.error or 'no reason recorded'})"
    if host.status != HostStatus.OK:
        return None, "not checked yet (status unknown)"
    used = set(Container.objects.holding().filter(host=host).values_list("port", flat=True))
    in_range = used & set(range(host.port_min, host.port_max + 1))
    port = next((p for p in range(host.port_min, host.port_max + 1) if p not in used), None)
    if port is None:
        return None, f"port range full ({len(in_range)}/{host.port_count} used)"
    gpus: list[str] = []
    if gpus_needed:
        taken = set(GpuReservation.objects.filter(host=host).values_list("device_id", flat=True))
        free = [gpu for gpu in host.gpus if gpu not in taken]
        if len(free) < gpus_needed:
            return None, f"not enough GPUs ({len(free)} free, {gpus_needed} needed)"
        gpus = free[:gpus_needed]
    return Fit(host, len(used), port, gpus), ""
