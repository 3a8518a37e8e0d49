"""What each task's graph weighs (`servers.speed.Work`), remembered by workflow key.

Every graph of one workflow key is the same up to its seeds, which change neither
a graph's size nor its speed key, so a key's work is computed from one graph once
and graphs are read from the database only for keys not seen yet: dispatch and
the ETA ask for the work of hundreds of tasks at a time.
"""

from __future__ import annotations

from collections.abc import Iterable

from servers import speed
from tasks.models import Task

KEPT = 10_000
_by_key: dict[str, speed.Work] = {}


def work_of(task: Task) -> speed.Work:
    """The task's work (its graph is read if the key is new)."""
    if not task.workflow_key:
        return speed.Work.of(task.graph)
    work = _by_key.get(task.workflow_key)
    if work is None:
        work = _remember(task.workflow_key, speed.Work.of(task.graph))
    return work


def works_of(rows: Iterable[tuple[int, str]]) -> dict[int, speed.Work]:
    """Task id -> work, for (task id, workflow key) rows: one query for one graph of
    each new key (and those of tasks without a key), none when every key is known."""
    rows = list(rows)
    works = {pk: _by_key[key] for pk, key in rows if key and key in _by_key}
    unknown = [(pk, key) for pk, key in rows if pk not in works]
    if not unknown:
        return works
    read_for: dict[int, int] = {}  # task id -> the task whose graph stands for it
    first_of: dict[str, int] = {}
    for pk, key in unknown:
        read_for[pk] = first_of.setdefault(key, pk) if key else pk
    graphs = Task.objects.filter(pk__in=set(read_for.values())).values_list("pk", "graph")
    read = {pk: speed.Work.of(graph) for pk, graph in graphs}
    for pk, key in unknown:
        work = read.get(read_for[pk])
        if work is not None:  # else deleted meanwhile: left out
            works[pk] = _remember(key, work) if key else work
    return works


def _remember(key: str, work: speed.Work) -> speed.Work:
    if len(_by_key) >= KEPT:
        _by_key.clear()
    _by_key[key] = work
    return work
