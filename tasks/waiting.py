"""Why a pending task is not on a server yet, in words for its page and the API.

In order: a paused queue (global, then the team's), a retry backing off, a
team's or user's running limit (`fairness.limits`), the whole fleet being full
(dispatch found no free slot at all on its last pass), then what the balancer
said when dispatch last asked about the task's workflow.
Dispatch writes the last two to the cache (`note_workflow`, `note_fleet`); a
task that dispatch has not looked at yet has no reason (None).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from django.core.cache import cache
from django.utils import timezone

from comfyweb import timefmt
from fairness import limits
from servers.containers.growth import pools_growing
from tasks.models import QueuePause, Status, Task

logger = logging.getLogger("tasks.dispatch")

TTL = 300  # seconds; dispatch runs at least every minute and writes them again
FLEET_KEY = "tasks:waiting-fleet"


def _workflow_cache_key(workflow_key: str) -> str:
    return f"tasks:waiting:{workflow_key or '-'}"


def note_workflow(key: str, reason: str) -> None:
    """The balancer found no server for tasks of this workflow: why."""
    _set(_workflow_cache_key(key), reason)


def note_fleet(reason: str | None) -> None:
    """No task can be claimed at all (None: some can again)."""
    if reason is None:
        try:
            cache.delete(FLEET_KEY)
        except Exception:
            logger.warning("could not clear the fleet waiting reason", exc_info=True)
    else:
        _set(FLEET_KEY, reason)


def _set(key: str, reason: str) -> None:
    try:
        cache.set(key, reason, timeout=TTL)
    except Exception:  # the cache is Redis; a missing reason only costs words on a page
        logger.warning("could not store the waiting reason", exc_info=True)


def reasons(tasks: Iterable[Task], *, now: datetime | None = None) -> dict[int, str]:
    """Task id -> why it waits, for the pending ones among `tasks` whose reason is known."""
    pending = [task for task in tasks if task.status == Status.PENDING]
    if not pending:
        return {}
    now = now or timezone.now()
    pauses = {pause.scope: pause for pause in QueuePause.objects.select_related("team")}
    keys = {_workflow_cache_key(task.workflow_key) for task in pending} | {FLEET_KEY}
    try:
        noted = cache.get_many(list(keys))
    except Exception:
        logger.warning("could not read the waiting reasons", exc_info=True)
        noted = {}
    found: dict[int, str] = {}
    growing: str | None = None  # read once, and only if some task waits for a server
    limited = limits.reasons(pending)  # teams' and users' running limits (fairness)
    for task in pending:
        held = (
            _paused(pauses.get(QueuePause.scope_for(None)))
            or _paused(pauses.get(QueuePause.scope_for(task.team_id)))
            or _backing_off(task, now)
            or limited.get(task.pk)
        )
        if held:
            found[task.pk] = held
        elif reason := noted.get(FLEET_KEY) or noted.get(_workflow_cache_key(task.workflow_key)):
            growing = pools_growing() if growing is None else growing
            found[task.pk] = f"{reason}; {growing}" if growing else reason
    return found


def _paused(pause: QueuePause | None) -> str:
    if pause is None:
        return ""
    whose = f"{pause.team.name}'s queue" if pause.team_id else "the queue"
    return f"{whose} is paused" + (f": {pause.reason}" if pause.reason else "")


def _backing_off(task: Task, now: datetime) -> str:
    if task.not_before is None or task.not_before <= now:
        return ""
    return f"retrying after a failed attempt, {timefmt.until(task.not_before, now)}"
