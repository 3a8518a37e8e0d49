"""Usage rows as the accounting hook writes them, for report and quota tests."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

from accounting.models import TeamQuota, Usage
from accounting.reports import today_utc

_task_refs = itertools.count(10_000)


def bill(
    team,
    gpu_seconds: float,
    *,
    day: date | None = None,
    user=None,
    server=None,
    workflow: str = "Portraits",
    weight: float = 1.0,
    attempt: int = 1,
    task_ref: int | None = None,
) -> Usage:
    day = day or today_utc()
    ended = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    seconds = gpu_seconds / weight
    return Usage.objects.create(
        task_ref=task_ref or next(_task_refs),
        attempt=attempt,
        team=team,
        user=user,
        username=getattr(user, "username", ""),
        server=server,
        server_name=getattr(server, "name", ""),
        workflow=workflow,
        outcome="completed",
        started=ended - timedelta(seconds=seconds),
        ended=ended,
        seconds=seconds,
        weight=weight,
        gpu_seconds=gpu_seconds,
        day=day,
    )


def quota(team, *, soft: float | None = None, hard: float | None = None) -> TeamQuota:
    return TeamQuota.objects.create(team=team, soft_gpu_seconds=soft, hard_gpu_seconds=hard)
