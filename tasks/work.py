"""What each task's graph weighs (`servers.speed.Work`): its speed key and work
units, computed once when it is submitted (`fields_of`) and kept on the task, so
dispatch and the ETA weigh hundreds of tasks without reading one graph. A task
without them (made before they were kept) is weighed from its graph.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from servers import speed
from tasks.models import Task


def fields_of(graph: Mapping[str, Any]) -> dict[str, Any]:
    """The Task columns that keep the graph's work."""
    work = speed.Work.of(graph)
    return {"speed_key": work.key, "work_units": work.units}


def work_of(task: Task) -> speed.Work:
    if task.speed_key:
        return speed.Work(task.speed_key, task.work_units)
    return speed.Work.of(task.graph)


def works_of(rows: Iterable[tuple[int, str, float]]) -> dict[int, speed.Work]:
    """Task id -> work, for (task id, speed key, work units) rows; one query for
    the graphs of those without a key, none otherwise."""
    works: dict[int, speed.Work] = {}
    unweighed = []
    for pk, key, units in rows:
        if key:
            works[pk] = speed.Work(key, units)
        else:
            unweighed.append(pk)
    if unweighed:
        for pk, graph in Task.objects.filter(pk__in=unweighed).values_list("pk", "graph"):
            works[pk] = speed.Work.of(graph)
    return works  # a task deleted meanwhile is left out
