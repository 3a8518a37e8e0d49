"""Cancel (S4): one task or a whole batch, whatever state it is in.

- `pending` → `canceled` at once (a conditional transition: if dispatch claims
  it at the same moment, exactly one of the two wins, and we follow the task
  into its new state).
- `dispatched` → `cancel_requested`, the prompt deleted from the server's queue
  (POST /queue delete), and `canceled` once the server's /queue no longer
  holds it. If it started running meanwhile, it is interrupted as below.
- `running` → `cancel_requested` and a targeted interrupt (POST /interrupt with
  our prompt id, so another client's prompt is never hit). The task becomes
  `canceled` only when the server confirms: `execution_interrupted` reaches the
  execution handler, which calls `transition(..., Status.CANCELED)`; the
  reconciler does the same if that event is missed, and a failed retry of a
  task whose cancel was requested ends `canceled` too.

Outcomes (`cancel_task`'s return value): "canceled", "requested" (waiting for
the server's confirmation), "finished" (nothing to cancel), "unreachable" (the
server did not answer: `cancel_requested` stays set and the reconciler
finishes the job).
"""

from __future__ import annotations

import asyncio
import logging

from django.core.exceptions import PermissionDenied

from servers.comfyui import ComfyUIClient, ComfyUIError
from servers.comfyui.client import Timeouts
from servers.models import Server
from tasks.models import Status, Task
from tasks.transitions import record, transition

logger = logging.getLogger("tasks.cancel")

CANCELED = "canceled"
REQUESTED = "requested"
FINISHED = "finished"
UNREACHABLE = "unreachable"
TIMEOUTS = Timeouts(connect=3.0, read=10.0, write=10.0, pool=3.0)
# The task can change state under us (dispatched, started); follow it a few times.
_MAX_TRIES = 5


def cancel_task(task_id: int, *, by) -> str:
    """Cancel the task (see the module docstring); returns the outcome.

    `by` is the user (PermissionDenied unless they may submit for the task's
    team), or None for the system.
    """
    task = Task.objects.select_related("team").get(pk=task_id)
    if by is not None and not task.team.can_submit(by):
        raise PermissionDenied("You cannot cancel this team's tasks.")
    who = getattr(by, "username", "") or "the system"
    for _ in range(_MAX_TRIES):
        task = Task.objects.get(pk=task_id)
        if task.status in Status.finished():
            return FINISHED
        if task.status == Status.PENDING:
            if transition(task_id, Status.PENDING, Status.CANCELED, message=f"canceled by {who}"):
                return CANCELED
            continue
        outcome = _cancel_on_server(task, who)
        if outcome is not None:
            return outcome
    return REQUESTED


def cancel_batch(batch_id: int, *, by) -> dict[str, int]:
    """Cancel every unfinished task of the batch; outcome counts."""
    totals: dict[str, int] = {}
    ids = Task.objects.filter(batch_id=batch_id).exclude(status__in=Status.finished())
    for task_id in ids.values_list("pk", flat=True):
        outcome = cancel_task(task_id, by=by)
        totals[outcome] = totals.get(outcome, 0) + 1
    return totals


def _cancel_on_server(task: Task, who: str) -> str | None:
    """The outcome, or None if the task changed state first (the caller looks again)."""
    # Set first: whatever happens next (retry, a missed event, reconciliation)
    # sees that the user asked and ends the task canceled.
    asked = Task.objects.filter(
        pk=task.pk, prompt_id=task.prompt_id, status__in=Status.active()
    ).update(cancel_requested=True)
    if not asked:
        return None
    server = Server.objects.filter(pk=task.server_id).first()
    if server is None:
        # Its server was removed: the prompt is beyond reach, end it here.
        transition(task.pk, Status.active(), Status.CANCELED, message=f"canceled by {who}")
        return CANCELED
    try:
        still_running = asyncio.run(_remove(server, task.prompt_id, task.status))
    except ComfyUIError as error:
        record(task.pk, f"cancel requested by {who}; {server.name} did not answer: {error}")
        return UNREACHABLE
    if still_running:
        record(task.pk, f"cancel requested by {who}: interrupting on {server.name}")
        return REQUESTED
    # Deleted from the queue before it ran: nothing will ever confirm, so we do.
    if transition(
        task.pk,
        Status.DISPATCHED,
        Status.CANCELED,
        message=f"canceled by {who}: removed from {server.name}'s queue",
        where={"prompt_id": task.prompt_id},
    ):
        return CANCELED
    # It started (or ended) meanwhile: the interrupt covers a start; re-read.
    task.refresh_from_db()
    if task.status in Status.finished():
        return CANCELED if task.status == Status.CANCELED else FINISHED
    asyncio.run(_interrupt(server, task.prompt_id))
    return REQUESTED


async def _remove(server: Server, prompt_id: str, status: str) -> bool:
    """Delete the prompt from the server's queue, interrupt it if it runs; True if it runs."""
    async with _client(server) as client:
        if status == Status.DISPATCHED:
            await client.delete_queued([prompt_id])
            queue = await client.get_queue()
            if prompt_id not in {item.prompt_id for item in queue.running}:
                return False
        await client.interrupt(prompt_id)
        return True


async def _interrupt(server: Server, prompt_id: str) -> None:
    async with _client(server) as client:
        await client.interrupt(prompt_id)


def _client(server: Server) -> ComfyUIClient:
    return ComfyUIClient(server.base_url, headers=server.auth_headers or None, timeouts=TIMEOUTS)
