"""Cancel (S4): one task or a whole batch, whatever state it is in.

- `pending` → `canceled` at once (a conditional transition: if dispatch claims
  it at the same moment, exactly one of the two wins, and we follow the task
  into its new state).
- `dispatched` → `cancel_requested` (and "cancel requested" in the timeline),
  the prompt deleted from the server's queue (POST /queue delete), and
  `canceled` once the server's /queue no longer holds it. If it started
  running meanwhile, it is interrupted as below.
- `running` → `cancel_requested` and a targeted interrupt (POST /interrupt with
  our prompt id, so another client's prompt is never hit). The task becomes
  `canceled` only when the server confirms: `execution_interrupted` reaches the
  execution handler, which calls `transition(..., Status.CANCELED)`; the
  reconciler does the same if that event is missed, and a failed retry of a
  task whose cancel was requested ends `canceled` too.

- A prompt already in the server's history ended before the cancel arrived:
  nothing is interrupted and the task ends as its run did (a completed task
  does not keep the request: `tasks.outputs` clears it).

Outcomes (`cancel_task`'s return value): "canceled", "requested" (waiting for
the server's confirmation), "finished" (nothing to cancel: it had ended),
"unreachable" (the server did not answer: `cancel_requested` stays set and the
reconciler finishes the job).
"""

from __future__ import annotations

import asyncio
import logging

from django.core.exceptions import PermissionDenied
from django.db import transaction

from servers.clients import client_for
from servers.comfyui import ComfyUIError
from servers.models import Server
from tasks.models import Status, Task
from tasks.transitions import record, transition

logger = logging.getLogger("tasks.cancel")

CANCELED = "canceled"
REQUESTED = "requested"
FINISHED = "finished"
UNREACHABLE = "unreachable"
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
    # Flag and timeline entry first, in one transaction on the task's row: whatever
    # happens next (retry, a missed event, reconciliation) sees that the user
    # asked and ends the task canceled, and an end that races with us is logged
    # after the request, never before it.
    with transaction.atomic():
        asked = Task.objects.filter(
            pk=task.pk, prompt_id=task.prompt_id, status__in=Status.active()
        ).update(cancel_requested=True)
        if not asked:
            return None
        record(task.pk, f"cancel requested by {who}")
    server = Server.objects.filter(pk=task.server_id).first()
    if server is None:
        # Its server was removed: the prompt is beyond reach, end it here.
        transition(task.pk, Status.active(), Status.CANCELED, message=f"canceled by {who}")
        return CANCELED
    try:
        where = asyncio.run(_remove(server, task.prompt_id))
    except ComfyUIError as error:
        _note_if_active(task.pk, f"{server.name} did not answer the cancel: {error}")
        return UNREACHABLE
    if where == _RUNNING:
        _note_if_active(task.pk, f"interrupting on {server.name}")
        return REQUESTED
    if where == _ENDED:
        # It ran to its end before the cancel arrived: collecting its outputs
        # (or the reconciler) finishes it, and the request changes nothing.
        return FINISHED
    # Deleted from the queue before it ran: nothing will ever confirm, so we do.
    if transition(
        task.pk,
        Status.active(),
        Status.CANCELED,
        message=f"canceled by {who}: removed from {server.name}'s queue",
        where={"prompt_id": task.prompt_id},
    ):
        return CANCELED
    task.refresh_from_db()
    return CANCELED if task.status == Status.CANCELED else FINISHED


def _note_if_active(task_id: int, message: str) -> None:
    """A timeline entry that only makes sense before the task ends (keeps the order)."""
    with transaction.atomic():
        if Task.objects.select_for_update().filter(pk=task_id, status__in=Status.active()):
            record(task_id, message)


# Where `_remove` found the prompt.
_RUNNING = "running"  # it runs: interrupted, the server confirms with execution_interrupted
_REMOVED = "removed"  # it waited in the queue (or never arrived): deleted
_ENDED = "ended"  # it is in the server's history: it finished before the cancel


async def _remove(server: Server, prompt_id: str) -> str:
    """Stop the prompt wherever it is on the server; where it was (see above)."""
    async with client_for(server, "cancel") as client:
        # Deleting a prompt that is not queued is a no-op, so this is safe in any state.
        await client.delete_queued([prompt_id])
        queue = await client.get_queue()
        if prompt_id in {item.prompt_id for item in queue.running}:
            await client.interrupt(prompt_id)
            return _RUNNING
        # Not queued and not running: ComfyUI moves a prompt from running to its
        # history in one step, so it either ended or was never (or no longer) there.
        if await client.get_history(prompt_id) is not None:
            return _ENDED
        return _REMOVED
