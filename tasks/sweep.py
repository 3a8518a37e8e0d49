"""Hand-offs between processes that survive a broker blip or a dead worker (issue #11).

Work passes between ComfyWeb's processes as django-q jobs in Redis. A job that
could not be queued (Redis away for a moment), or that died with its worker,
must not leave a task stuck, holding its server slot, until the two-minute
reconciliation. So each hand-off is first written to the task's row, and the
monitor's loop calls `sweep()` every tick (`tasks.execution.TaskEventHandler.tick`),
which queues again what is overdue:

- **Output collection**: when a prompt succeeded (`prompt_succeeded`), its
  server slot is freed and dispatch woken first; then `request_collection` sets
  `collect_requested_at` (in the same UPDATE as the final progress), then
  queues `collect_outputs`. A task still on its server `COLLECT_GRACE` seconds
  later has the job queued again, then again at intervals as long as it has
  waited so far (at most `COLLECT_EVERY_MAX`); a job that starts holds them off
  for `COLLECTING` seconds (`collecting`).
- **Prompts claimed but never sent**: dispatch leases each task it claimed
  until the server accepted its prompt (`Task.sending_until`, renewed while the
  dispatcher lives). A lease that ran out means the dispatcher died first: the
  server's reconciliation is queued, which puts a prompt the server does not
  know back in the queue without counting it as a run (`transitions.put_back`).
- **Retry backoffs**: `retry_times` tells the monitor when the next
  `not_before` ends, so dispatch is woken then, as the task's timeline says.

The pace of re-queueing is kept in the cache (Redis, like the broker): while it
is down nothing can be queued anyway, and a key lost with it costs one job more.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta
from typing import Any

from django.core.cache import cache
from django.db.models import Min, Q
from django.utils import timezone

from tasks import enqueue
from tasks.models import Status, Task
from tasks.transitions import free_slot

logger = logging.getLogger("tasks.sweep")

COLLECT_JOB = enqueue.COLLECT_OUTPUTS
RECONCILE_JOB = enqueue.RECONCILE_SERVER
# Seconds after success before a collection that has not happened is queued again.
COLLECT_GRACE = 5.0
COLLECT_EVERY_MAX = 60.0
# A collection job that started is not duplicated for this long.
COLLECTING = 60.0
# A server is asked about prompts whose dispatcher died at most this often.
UNSENT_EVERY = 10.0
BATCH = 100
KEY_PREFIX = "tasks:sweep"


def prompt_succeeded(task_id: int, prompt_id: str, **fields: Any) -> None:
    """The prompt ended well on its server (seen by the monitor or a reconcile): its
    slot goes to the next task at once, and its outputs are collected meanwhile
    (`fields`, e.g. the final progress, are saved with the request)."""
    if free_slot(task_id, prompt_id):
        enqueue.wake_dispatch()
    request_collection(task_id, prompt_id, **fields)


def request_collection(task_id: int, prompt_id: str, **fields: Any) -> bool:
    """Note that this attempt's outputs are to be collected, then queue the job.

    The note comes first, with `fields` (e.g. the final progress) in the same
    UPDATE; if the job cannot be queued now, `sweep()` queues it later. False
    if the task is no longer on a server with this prompt.
    """
    noted = Task.objects.filter(pk=task_id, prompt_id=prompt_id, status__in=Status.active()).update(
        collect_requested_at=timezone.now(), **fields
    )
    if noted:
        enqueue.enqueue(COLLECT_JOB, task_id)
    return bool(noted)


def collecting(task_id: int) -> None:
    """A collection job started on the task: hold off the sweep's re-queues meanwhile."""
    try:
        cache.set(_collect_key(task_id), 1, timeout=COLLECTING)
    except Exception:
        logger.warning("could not note the collection of task %s", task_id, exc_info=True)


def sweep(now: datetime | None = None) -> dict[str, int]:
    """Queue again the collections and unsent checks that are overdue; how many of each."""
    now = now or timezone.now()
    return {"collections": _collections(now), "unsent": _unsent(now)}


def retry_times(after: datetime | None, now: datetime) -> tuple[bool, datetime | None]:
    """Among pending tasks: did a backoff end in (`after`, `now`], and when does the next end?"""
    backing_off = Task.objects.filter(status=Status.PENDING, not_before__isnull=False)
    if after is not None:
        backing_off = backing_off.filter(not_before__gt=after)
    found = backing_off.aggregate(
        first=Min("not_before"), upcoming=Min("not_before", filter=Q(not_before__gt=now))
    )
    return found["first"] is not None and found["first"] <= now, found["upcoming"]


def _collections(now: datetime) -> int:
    overdue = (
        Task.objects.filter(
            status__in=Status.active(),
            collect_requested_at__lte=now - timedelta(seconds=COLLECT_GRACE),
        )
        .order_by("collect_requested_at")
        .values_list("pk", "collect_requested_at")[:BATCH]
    )
    queued = 0
    for task_id, requested in overdue:
        waited = (now - requested).total_seconds()
        pace = min(COLLECT_EVERY_MAX, max(COLLECT_GRACE, waited))
        outcome = _once(_collect_key(task_id), pace, COLLECT_JOB, task_id)
        if outcome is None:
            break  # Redis is down: the next tick tries again
        queued += outcome
    return queued


def _unsent(now: datetime) -> int:
    servers = (
        Task.objects.filter(status=Status.DISPATCHED, sending_until__lte=now)
        .exclude(server=None)
        .order_by()
        .values_list("server_id", flat=True)
        .distinct()
    )
    queued = 0
    for server_id in servers:
        key = f"{KEY_PREFIX}:unsent:{server_id}"
        outcome = _once(key, UNSENT_EVERY, RECONCILE_JOB, server_id)
        if outcome is None:
            break
        queued += outcome
    return queued


def _once(key: str, every: float, job: str, *args: Any) -> bool | None:
    """Queue `job` unless it was queued (under `key`) in the last `every` seconds.

    None if Redis is down: nothing could be queued.
    """
    try:
        if not cache.add(key, 1, timeout=math.ceil(every)):
            return False
    except Exception:
        logger.warning("hand-off sweep: the cache is unavailable", exc_info=True)
        return None
    if enqueue.enqueue(job, *args):
        return True
    try:
        cache.delete(key)  # nothing was queued: the next tick must try again
    except Exception:
        logger.warning("hand-off sweep: the cache is unavailable", exc_info=True)
    return None


def _collect_key(task_id: int) -> str:
    return f"{KEY_PREFIX}:collect:{task_id}"
