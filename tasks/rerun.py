"""Retry and Run again (S7 "retry of failed tasks", issue 16): the one service behind
the task page's buttons, the batch page's and the API's.

- **Retry** puts a failed or canceled task back in the queue *in place*: the same
  task, its stored graph (seeds included), its batch, its priority. Its timeline
  keeps the run that ended ("retried by …" follows it), its attempts start again
  from zero and what the last run left (error, server, progress, times) is
  cleared. In place, so a batch keeps its size and its counts say what finally
  happened, and a link to the task stays the link to its latest run.
- **Run again** submits new tasks with the stored graphs of the given ones (one
  task, or every task of a batch: a new batch), through `submit_runs` like any
  submission. The graph is the one the task ran, not its template rendered again:
  an edited template or a new workflow version changes nothing, and the same seeds
  give the same picture. `new_seeds=True` draws fresh seeds instead, on the inputs
  a batch of the same submission would re-seed (`fresh_seed_keys`): the
  template's seed parameters, else the seed-like inputs no parameter binds. A
  value a parameter binds (an int the user chose for `seed`) is never re-seeded.
  Running the very same graph twice in a row may be served from the server's cache.

Both check that `by` may submit for the tasks' team (PermissionDenied), and
refuse work no enabled server can run (`Unrunnable`), as submitting does.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from servers.containers import tending
from tasks import enqueue
from tasks.models import Status, Task
from tasks.submission import SubmitResult, submit_runs
from tasks.transitions import FRESH_ATTEMPT, transition
from workflows.models import ParameterType
from workflows.runnable import require_runnable
from workflows.templating import Run, fresh_seed, parameters_of, seed_inputs

RETRYABLE = (Status.FAILED, Status.CANCELED)
# What the ended run left behind, which the next one must not show: what a failed
# attempt's automatic retry clears, plus what only a finished task has.
_FRESH_RUN: dict[str, Any] = {
    **FRESH_ATTEMPT,
    "attempts": 0,
    "not_before": None,
    "cancel_requested": False,
    "error_type": "",
    "error_message": "",
    "error_node": "",
    "dispatched_at": None,
    "started_at": None,
    "finished_at": None,
}


def retry(task_ids: Iterable[int], *, by) -> list[int]:
    """Put the failed or canceled ones of `task_ids` back in the queue; the ids retried.

    Tasks in other states are left alone (a task retried twice at once is retried
    once: the transition is conditional)."""
    tasks = list(
        Task.objects.filter(pk__in=list(task_ids), status__in=RETRYABLE)
        .select_related("team")
        .order_by("pk")
    )
    _require_submit(tasks, by)
    require_runnable(task.graph for task in tasks)
    who = _who(by)
    retried = [
        task.pk
        for task in tasks
        if transition(
            task.pk,
            RETRYABLE,
            Status.PENDING,
            message=f"retried by {who}: the same graph runs again",
            data={"retried_by": who, "after": task.status},
            **_FRESH_RUN,
        )
    ]
    if retried:
        transaction.on_commit(_queued, robust=True)
    return retried


def run_again(
    task_ids: Sequence[int], *, by, new_seeds: bool = False, description: str = ""
) -> SubmitResult:
    """New pending tasks running the stored graphs of `task_ids` (a batch when several).

    The tasks must come from one submission (one team, workflow version and
    template, as a batch's do); a ValidationError says otherwise."""
    tasks = list(
        Task.objects.filter(pk__in=list(task_ids))
        .select_related("team", "batch", "template", "workflow_version__workflow")
        .order_by("pk")
    )
    if not tasks:
        raise ValidationError("Nothing to run again.")
    first = tasks[0]
    sources = {(t.team_id, t.workflow_version_id, t.template_id) for t in tasks}
    if len(sources) > 1:
        raise ValidationError("Run again tasks of one submission at a time.")
    _require_submit(tasks, by)
    seeds = fresh_seed_keys(first) if new_seeds else {}
    return submit_runs(
        team=first.team,
        submitter=by,
        runs=[_reseeded(task, seeds) for task in tasks],
        workflow_version=first.workflow_version,
        template=first.template,
        priority=first.priority,
        description=description or _description(first, len(tasks)),
    )


def fresh_seed_keys(task: Task) -> dict[tuple[str, str], str]:
    """(node id, input) → the params key, for each seed `new_seeds` draws anew on `task`'s graph.

    As a batch of one submission draws them (`workflows.templating.expand_runs`):
    the template's seed parameters, else the literal seed-like inputs no parameter
    binds, recorded as "<node>.<input>"."""
    params = parameters_of(task.template) if task.template_id else []
    in_graph = seed_inputs(task.graph)
    targets = set(in_graph.values())
    seeds = {
        (p.node_id, p.input_name): p.name
        for p in params
        if p.type == ParameterType.SEED and (p.node_id, p.input_name) in targets
    }
    if seeds:
        return seeds
    bound = {(p.node_id, p.input_name) for p in params}
    return {target: key for key, target in in_graph.items() if target not in bound}


def _reseeded(task: Task, seeds: dict[tuple[str, str], str]) -> Run:
    """The task's stored graph and params, with a fresh value on each of `seeds`."""
    graph, params = copy.deepcopy(task.graph), dict(task.params)
    for (node_id, input_name), key in seeds.items():
        params[key] = graph[node_id]["inputs"][input_name] = fresh_seed()
    return Run(graph=graph, params=params)


def _require_submit(tasks: Sequence[Task], by) -> None:
    for team in {task.team_id: task.team for task in tasks}.values():
        if not team.can_submit(by):
            raise PermissionDenied("You cannot submit work for this team.")


def _description(task: Task, count: int) -> str:
    if task.batch_id is not None and task.batch is not None and count > 1:
        return f"{task.batch.description or f'batch {task.batch_id}'} (run again)"[:200]
    return f"task {task.pk} (run again)"


def _queued() -> None:
    # As after a submission (the transitions themselves refresh the pages).
    enqueue.wake_dispatch()
    tending.wake()  # a container pool may have to grow for them


def _who(by) -> str:
    return getattr(by, "username", "") or "the system"
