"""Dispatch (D2): send pending tasks to servers, one atomic claim at a time."""

from __future__ import annotations

import logging

from django.core.cache import cache

logger = logging.getLogger("tasks.dispatch")

# A wake-up that is already queued and not yet started makes another one
# pointless: the job clears this key when it starts, so a wake that arrives
# while it runs queues one more pass and nothing is missed.
WAKE_KEY = "tasks:dispatch-wake"
# If a queued job is lost (worker killed), wakes resume after this; the
# one-minute schedule covers the gap.
WAKE_TTL = 30


def wake_dispatch() -> None:
    """Enqueue `tasks.jobs.dispatch` unless a run is already queued. Cheap; call freely."""
    from django_q.tasks import async_task

    try:
        fresh = cache.add(WAKE_KEY, 1, timeout=WAKE_TTL)
    except Exception:  # the cache is Redis, like the broker; enqueue anyway
        logger.warning("dispatch wake-up dedup unavailable", exc_info=True)
        fresh = True
    if fresh:
        async_task("tasks.jobs.dispatch", group="dispatch")


def woken() -> None:
    """The dispatch job has started: later wake-ups must queue another run."""
    try:
        cache.delete(WAKE_KEY)
    except Exception:
        logger.warning("dispatch wake-up dedup unavailable", exc_info=True)


def dispatch_pending() -> int:
    """Send as many pending tasks as servers and limits allow; how many were sent."""
    return 0
