"""Writes a `Usage` row when an attempt leaves its server (the `task_transitioned` hook).

What "held a server" means: the prompt's run on the server, `execution_start`
to the message that ended it (`execution_success`, `execution_error`,
`execution_interrupted`), measured by the **server's own clock**: the monitor
notes both stamps on the timeline as the prompt ends (`accounting.server_clock`).
That is the GPU's time, free of the events' transport and of the monitor's
backlog (a busy monitor saw a 1.1 s run start 0.8 s late in our tests, so the
task rows' `started_at`/`finished_at` would have billed 0.35 s), and it ends
before output collection (which `finished_at` of a completed task includes).

When the monitor did not see both ends (it restarted, lost its lease, the
server was lost, reconciliation ended the attempt) the span falls back to
ComfyWeb's clock: the task's `running` TaskEvent (or its dispatch, when
reconciliation found the prompt done without its start being seen: an upper
bound) to the prompt's end as noted (slot freed) or the event that ended the
attempt. An attempt that was never seen running nor done (refused, lost before
it ran, put back) held no GPU and writes nothing.

Exactly once per attempt: `transition()` lets one caller win each change, and the
(task, attempt) unique constraint makes a second writer a no-op.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from accounting import server_clock, usage_updates
from accounting.models import ServerCost, Usage
from tasks.models import Status, Task, TaskEvent

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Span:
    started: datetime
    ended: datetime

    @property
    def seconds(self) -> float:
        return max(0.0, (self.ended - self.started).total_seconds())


def on_task_transitioned(sender, *, task_id: int, from_status: str, to_status: str, **kw) -> None:
    """An attempt ends when the task leaves a server's states for any other."""
    if from_status in Status.active() and to_status not in Status.active():
        record_attempt(task_id, from_status, to_status, kw.get("server_id"))


def record_attempt(
    task_id: int, from_status: str, to_status: str, server_id: int | None
) -> Usage | None:
    """The Usage row of the attempt that just left its server; None if it never ran."""
    leaving = (
        TaskEvent.objects.filter(task_id=task_id, from_status=from_status, to_status=to_status)
        .order_by("-pk")
        .first()
    )
    task = (
        Task.objects.select_related("submitter", "template", "workflow_version__workflow")
        .filter(pk=task_id)
        .first()
    )
    if leaving is None or task is None:
        return None
    span = attempt_span(task_id, leaving, to_status)
    if span is None:
        return None
    # retry_or_fail notes the attempt it ended; a finished task's count is final.
    attempt = leaving.data.get("attempt") or max(task.attempts, 1)
    weight = ServerCost.weight_of(server_id)
    usage, created = Usage.objects.get_or_create(
        task_ref=task_id,
        attempt=attempt,
        defaults={
            "task": task,
            "team_id": task.team_id,
            "user": task.submitter,
            "username": getattr(task.submitter, "username", ""),
            "server_id": server_id,
            "server_name": _server_name(server_id),
            "workflow": workflow_name(task),
            "outcome": to_status,
            "started": span.started,
            "ended": span.ended,
            "seconds": span.seconds,
            "weight": weight,
            "gpu_seconds": span.seconds * weight,
            "day": span.ended.astimezone(UTC).date(),
        },
    )
    if created:
        usage_updates.usage_changed(task.team_id)
    return usage


def attempt_span(task_id: int, leaving: TaskEvent, to_status: str) -> Span | None:
    """When the attempt that `leaving` ended started running and for how long, from its events."""
    before = TaskEvent.objects.filter(task_id=task_id, pk__lt=leaving.pk)
    begun = before.filter(to_status__in=[Status.DISPATCHED, Status.RUNNING]).order_by("-pk").first()
    if begun is None:
        return None
    notes = TaskEvent.objects.filter(task_id=task_id, pk__gt=begun.pk, pk__lt=leaving.pk)
    served = notes.filter(data__has_key=server_clock.KEY).order_by("-pk").first()
    if served is not None:
        started_ms, ended_ms = served.data[server_clock.KEY]
        # Placed at its end as we saw it: the note is written as the end arrives.
        return Span(served.at - timedelta(milliseconds=ended_ms - started_ms), served.at)
    done = notes.filter(data__has_key="slot_freed").order_by("pk").first()
    if begun.to_status == Status.DISPATCHED and done is None and to_status != Status.COMPLETED:
        return None  # never seen running nor seen done: it held no GPU
    return Span(started=begun.at, ended=done.at if done else leaving.at)


def workflow_name(task: Task) -> str:
    if task.template is not None:
        return task.template.name
    if task.workflow_version is not None:
        return task.workflow_version.workflow.name
    return "(graph)"


def _server_name(server_id: int | None) -> str:
    from servers.models import Server

    if server_id is None:
        return ""
    return Server.objects.filter(pk=server_id).values_list("name", flat=True).first() or ""
