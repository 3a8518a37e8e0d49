"""Submitting work (S4): runs of a graph become pending tasks in our queue.

The workflows app renders each run's graph and parameters and calls
`submit_runs()`; everything after that (ordering, dispatch) is the queue's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from accounting.quotas import Admission, admit
from fairness.limits import require_queue_room
from servers.containers import tending
from servers.requirements import affinity_key_of, workflow_key_of
from tasks import enqueue, queue_panel, task_updates, work
from tasks.models import Batch, Priority, Status, Task, TaskEvent
from workflows.runnable import require_runnable
from workflows.templating import Run
from workflows.uploads import require_own_uploads


@dataclass
class SubmitResult:
    tasks: list[Task]
    batch: Batch | None  # only when more than one run was submitted
    # What the team's GPU quota made of it (lowered priority, 80 % warnings).
    admission: Admission | None = None


def submit_runs(
    *,
    team,
    submitter,
    runs: Sequence[Run],
    workflow_version=None,
    template=None,
    priority: int = Priority.NORMAL,
    description: str = "",
) -> SubmitResult:
    """Create one pending task per run (a batch when there are several) and wake dispatch.

    Raises PermissionDenied if `submitter` may not submit for `team` (or the
    workflow version or template belongs to another team), and
    ValidationError for an empty run list or an unknown priority,
    `ForbiddenUpload` (a ValidationError) when a graph's upload marker names a
    file that is not one of the team's uploads (`workflows.uploads`), and
    `Unrunnable` (a ValidationError) when no enabled server can run a graph and
    waiting would not change that (`workflows.runnable`), and
    `QueueLimitReached` (a ValidationError) past the team's or the submitter's
    queued limit (`fairness.limits`). Dispatch is
    enqueued only after the transaction commits, so a worker never looks for
    tasks that are not visible yet.
    """
    if not team.can_submit(submitter):
        raise PermissionDenied("You cannot submit work for this team.")
    # Defence in depth against id guessing: what a task names must be its team's.
    if workflow_version is not None and workflow_version.workflow.team_id != team.pk:
        raise PermissionDenied("That workflow belongs to another team.")
    if template is not None and template.team_id != team.pk:
        raise PermissionDenied("That template belongs to another team.")
    if not runs:
        raise ValidationError("Nothing to submit: no runs.")
    if priority not in Priority.values:
        raise ValidationError(f"Unknown priority {priority!r}.")
    # Every path of every submission comes here: the one place markers are checked.
    require_own_uploads((run.graph for run in runs), team.pk)
    require_runnable(run.graph for run in runs)
    # GPU quota: QuotaExceeded (a ValidationError) past the hard limit, low past the soft.
    admission = admit(team.pk, priority)
    priority = admission.priority
    now = timezone.now()
    version_id = workflow_version.pk if workflow_version is not None else None
    with transaction.atomic():
        # The team's and the submitter's queued limits (fairness), under a row lock.
        require_queue_room(team, submitter, len(runs))
        batch = None
        if len(runs) > 1:
            batch = Batch.objects.create(
                team=team, submitter=submitter, description=description[:200]
            )
        # One INSERT for the lot (submitting 400 runs took 3.7 s one by one).
        tasks = Task.objects.bulk_create(
            Task(
                team=team,
                submitter=submitter,
                workflow_version=workflow_version,
                template=template,
                params=run.params,
                graph=run.graph,
                workflow_key=workflow_key_of(run.graph),
                affinity_key=affinity_key_of(run.graph, version_id),
                **work.fields_of(run.graph),
                priority=priority,
                status=Status.PENDING,
                batch=batch,
                created_at=now,
            )
            for run in runs
        )
        TaskEvent.objects.bulk_create(
            TaskEvent(
                task=task,
                at=now,
                from_status="",
                to_status=Status.PENDING,
                message="; ".join(filter(None, ["submitted", admission.note])),
                data={"by": getattr(submitter, "username", ""), "batch": batch and batch.pk},
            )
            for task in tasks
        )
        # robust: nothing after the commit may turn the saved submission into an error.
        team_id = team.pk
        transaction.on_commit(lambda: _submitted(team_id), robust=True)
    return SubmitResult(tasks=tasks, batch=batch, admission=admission)


def _submitted(team_id: int) -> None:
    enqueue.wake_dispatch()
    tending.wake()  # a container pool may have to grow for it
    # Once per submission, however many runs: dashboards' counts, the team's lists.
    queue_panel.refresh_browsers()
    task_updates.announce_new_tasks(team_id)
