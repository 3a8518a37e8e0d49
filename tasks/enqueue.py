"""Queueing the tasks app's jobs: each path here names a function in `tasks/jobs.py`.

Everything in `tasks` that queues a job takes its dotted path from here and
queues it with `enqueue()` (or `wake_dispatch()` for dispatch). `wake_dispatch()`
lives here rather than in `tasks.dispatch`, so that the queue, submission,
outputs and reconciliation can wake dispatch without importing it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.core.cache import cache

from servers.containers import tending
from tasks.models import Status

DISPATCH = "tasks.jobs.dispatch"
RECONCILE_SERVER = "tasks.jobs.reconcile_server"
COLLECT_OUTPUTS = "tasks.jobs.collect_outputs"

logger = logging.getLogger("tasks.dispatch")

# A wake-up that is already queued and not yet started makes another one
# pointless: the job clears this key when it starts, so a wake that arrives
# while it runs queues one more pass and nothing is missed.
WAKE_KEY = "tasks:dispatch-wake"
# If a queued job is lost (worker killed), wakes resume after this; the
# one-minute schedule covers the gap.
WAKE_TTL = 30


def enqueue(job: str, *args: Any, **options: Any) -> bool:
    """Queue `job` (one of the paths above) with `args`; False if it could not be queued.

    `options` are django-q's (e.g. `group`). Never raises: each hand-off has a
    second chance (the sweep queues again what it noted on the task's row, the
    one-minute schedules dispatch and reconcile), so a broker that is away costs
    a warning, not the caller's work.
    """
    from django_q.tasks import async_task  # looked up per call: tests replace it

    try:
        async_task(job, *args, **options)
    except Exception as error:
        logger.warning("%s%r not queued (%s: %s)", job, args, type(error).__name__, error)
        return False
    return True


def wake_dispatch() -> None:
    """Enqueue `tasks.jobs.dispatch` unless a run is already queued. Cheap; call freely.

    In a process that dispatches itself (the monitor, `tasks.dispatch_here`) it
    wakes that process's dispatch thread instead.

    Best effort, never raises: it runs after the work was saved (often on commit
    of a request), and the one-minute schedule dispatches what a lost wake-up missed.
    """
    if _wake_here is not None:
        _wake_here()
        return
    try:
        fresh = cache.add(WAKE_KEY, 1, timeout=WAKE_TTL)
    except Exception:  # the cache is Redis, like the broker; enqueue anyway
        logger.warning("dispatch wake-up dedup unavailable", exc_info=True)
        fresh = True
    if not fresh:
        return
    if not enqueue(DISPATCH, group="dispatch"):
        woken()  # nothing is queued: the next wake-up must try again


_wake_here: Callable[[], None] | None = None


def dispatch_here(wake: Callable[[], None]) -> None:
    """From now on this process dispatches itself: `wake_dispatch()` calls `wake`."""
    global _wake_here
    _wake_here = wake


def cluster_started(**_: object) -> None:
    """The worker cluster (re)started (`qcluster`'s `cluster_started`): queue a pass now.

    A cluster killed while a dispatch job sat in its memory (django-q2's pusher
    takes jobs off Redis ahead of the workers) loses that job, but the wake-up
    key still says one is queued, so every wake-up was dropped until the key
    expired (WAKE_TTL): half a minute with nothing dispatched after a restart.
    """
    woken()
    wake_dispatch()


def woken() -> None:
    """The dispatch job has started: later wake-ups must queue another run."""
    try:
        cache.delete(WAKE_KEY)
    except Exception:
        logger.warning("dispatch wake-up dedup unavailable", exc_info=True)


def container_slot_freed(*, from_status: str, to_status: str, server_id: int | None, **_) -> None:
    """`task_transitioned` receiver: a prompt that left a container's server may leave
    it idle, which its pool's scale-down waits for (`servers.containers.tending`)."""
    if (
        server_id is not None
        and from_status in Status.active()
        and to_status not in Status.active()
    ):
        tending.slot_freed(server_id)
