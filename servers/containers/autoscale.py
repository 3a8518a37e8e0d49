"""How many containers a pool should have, and which ones go: a pure decision.

    desired = clamp(ceil((pending work it can run + prompts in flight on it) / jobs per container),
                    min size, max size)

unless staff pinned a size, or the pool is disabled or being deleted (then 0).
Growing starts every missing container at once (a queue that jumps gets its
containers together), unless the pool is backing off after crashes. Shrinking
drains only RUNNING containers idle (nothing in flight) for the pool's idle
seconds, the longest idle first; staff pinning, disabling or deleting drains the
least loaded at once. Never below the minimum: the desired size already says so.

Nothing here reads the database or Docker, so every rule is tested on plain values.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from servers.requirements import Requirements, has_model, model_index


@dataclass(frozen=True)
class PoolView:
    """What the decision needs of a pool's configuration and scheduler state."""

    name: str
    min_size: int
    max_size: int
    jobs_per_container: int
    idle_seconds: int
    enabled: bool = True
    pinned_size: int | None = None
    deleting: bool = False
    backoff_until: datetime | None = None
    failures_in_row: int = 0


@dataclass(frozen=True)
class ContainerView:
    id: int
    state: str  # ContainerState values
    inflight: int = 0
    idle_since: datetime | None = None


@dataclass(frozen=True)
class Decision:
    desired: int
    live: int  # starting + running
    work: int
    start: int = 0
    drain: tuple[int, ...] = field(default=())
    reason: str = ""

    @property
    def action(self) -> str:
        parts = []
        if self.start:
            parts.append(f"start {self.start}")
        if self.drain:
            parts.append(f"drain {len(self.drain)}")
        return ", ".join(parts) or "hold"


def decide(
    pool: PoolView, containers: Sequence[ContainerView], pending: int, now: datetime
) -> Decision:
    """The pool's desired size, and what to start and drain to get there."""
    live = [c for c in containers if c.state in ("starting", "running")]
    inflight = sum(c.inflight for c in live)
    work = pending + inflight
    desired, why, forced = _desired(pool, pending, inflight)
    if desired > len(live):
        missing = desired - len(live)
        if pool.backoff_until is not None and pool.backoff_until > now:
            why += (
                f"; {missing} to start after the crash backoff "
                f"({pool.failures_in_row} failed in a row, until {pool.backoff_until:%H:%M:%S})"
            )
            return Decision(desired, len(live), work, reason=why)
        return Decision(desired, len(live), work, start=missing, reason=why)
    if desired < len(live):
        surplus = len(live) - desired
        if forced:
            # Least loaded first; starting ones have nothing yet.
            going = sorted(live, key=lambda c: (c.inflight, c.state != "starting", -c.id))
        else:
            going = _idle_long_enough(live, pool, now)
            if len(going) < surplus:
                waiting = surplus - len(going)
                why += f"; {waiting} more to drain once idle for {pool.idle_seconds} s"
        chosen = tuple(c.id for c in going[:surplus])
        return Decision(desired, len(live), work, drain=chosen, reason=why)
    return Decision(desired, len(live), work, reason=why)


def _desired(pool: PoolView, pending: int, inflight: int) -> tuple[int, str, bool]:
    """(desired size, why, whether surplus goes without waiting to be idle)."""
    if pool.deleting:
        return 0, "the pool is being deleted", True
    if not pool.enabled:
        return 0, "the pool is disabled", True
    if pool.pinned_size is not None:
        size = min(pool.pinned_size, pool.max_size)
        return size, f"pinned to {pool.pinned_size} by staff (max {pool.max_size})", True
    work = pending + inflight
    need = math.ceil(work / max(1, pool.jobs_per_container))
    desired = min(max(need, pool.min_size), pool.max_size)
    why = (
        f"{pending} waiting + {inflight} in flight ÷ {pool.jobs_per_container} per container "
        f"= {need}"
    )
    if desired != need:
        why += f", kept between {pool.min_size} and {pool.max_size}"
    return desired, why, False


def _idle_long_enough(
    live: Sequence[ContainerView], pool: PoolView, now: datetime
) -> list[ContainerView]:
    cut = now - timedelta(seconds=pool.idle_seconds)
    idle = [
        c
        for c in live
        if c.state == "running" and c.inflight == 0 and c.idle_since and c.idle_since <= cut
    ]
    return sorted(idle, key=lambda c: (c.idle_since, c.id))


def next_idle_due(
    pool: PoolView, containers: Iterable[ContainerView], now: datetime
) -> datetime | None:
    """When the first idle container of a pool above its desired size may be drained."""
    dues = [
        c.idle_since + timedelta(seconds=pool.idle_seconds)
        for c in containers
        if c.state == "running" and c.inflight == 0 and c.idle_since is not None
    ]
    later = [due for due in dues if due > now]
    return min(later) if later else None


def can_run(
    requirements: Requirements,
    node_classes: Iterable[str] | None,
    model_files: Mapping[str, Iterable[str]] | None,
) -> bool:
    """Whether a pool whose servers reported these can run such work. A pool that never
    reported (None) is assumed able: its first container tells."""
    if node_classes is None:
        return True
    if not requirements.node_classes <= frozenset(node_classes):
        return False
    if model_files is None:
        return True
    index = model_index(model_files)
    return all(has_model(index, folder, name) for folder, name in requirements.model_files)


def pending_for(
    work: Iterable[tuple[Requirements, int]],
    node_classes: Iterable[str] | None,
    model_files: Mapping[str, Iterable[str]] | None,
) -> int:
    """How much of the pending work (requirements, count) a pool can run."""
    classes = None if node_classes is None else frozenset(node_classes)
    return sum(count for needs, count in work if can_run(needs, classes, model_files))
