"""The one place that changes `Task.status` (D2, STYLE habit 5).

Every state change in ComfyWeb — dispatch, the monitor's execution handler
(`tasks/execution.py`), output collection, cancel, reconciliation — goes through
`transition()`:

    moved = transition(
        task_id,
        (Status.DISPATCHED, Status.RUNNING),  # the states it may leave
        Status.COMPLETED,                      # the state it enters
        message="Outputs stored",
        data={"outputs": 3},                   # kept on the TaskEvent row
        where={"prompt_id": prompt_id},        # optional: only this attempt
        progress_fraction=1.0,                 # any other Task fields to set
    )
    if moved:
        ...  # we won: act on it (publish, collect, wake dispatch)

What it guarantees:

- **Conditional**: a single `UPDATE ... WHERE status = <seen> AND server = <seen>`
  that must match one row. A task that is already elsewhere (another worker or
  the handler moved it first) is left alone and `False` comes back, so two
  callers can never both act on one change. Never read-check-then-save a task.
- **One `TaskEvent` per change**, in the same database transaction, with the
  exact `from_status` the row left.
- **Timestamps**: entering `dispatched` sets `dispatched_at`, `running` sets
  `started_at`, a finished state sets `finished_at` (unless passed explicitly).
- **Slot release**: a task holds one of its server's slots (`Task.slot_held`)
  from its claim until its prompt is off the server. Leaving an active state
  (`dispatched`/`running`) for any other state gives a slot it still holds back
  (`ServerState.inflight - 1`, never below 0), exactly once, because only the
  caller that won the update releases it; so does `free_slot()` when a prompt
  ended and only its outputs are left to fetch. Do not decrement `inflight`
  anywhere else.
- **Signal**: `task_transitioned` is sent after the transaction commits
  (`task_id`, `from_status`, `to_status`, `server_id`, `team_id`, `batch_id`,
  `message`), so publishing
  to browsers can hook in without this module knowing about sockets. A listener
  that raises is logged; it never fails the caller nor keeps the others from
  hearing of the change.

`retry_or_fail()` is the failure policy on top of it (ARCHITECTURE decision 4):
a transient error or a lost prompt puts the task back to `pending` with a
`not_before` from the shared backoff, noting the server it failed on (dispatch
then prefers another one); once `max_attempts` runs have started it fails with
the history of its attempts; a task whose cancel was requested is canceled.
`Task.attempts` counts runs started (dispatch adds one as it claims the task),
so a first run is attempt 1 whether it is running, succeeded or failed.
`put_back()` is for a claim whose prompt never reached the server (its
dispatcher died before the server accepted it): pending again at once, and the
run it was counted for taken back, since none started.

What it does not do: wake dispatch. A caller that freed a slot and wants the
next task sent at once calls `tasks.enqueue.wake_dispatch()` (cheap; safe to
call often).

`where` guards against stale events: the execution handler passes
`where={"prompt_id": event.prompt_id}` so an event of an earlier attempt never
moves the task's current attempt.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.dispatch import Signal
from django.utils import timezone

from comfyweb.backoff import backoff_delay
from servers.models import ServerState
from tasks.models import Status, Task, TaskEvent

# Sent on commit: sender=Task, task_id, from_status, to_status, server_id, team_id,
# batch_id, message. The team and batch let listeners ask whether anyone watches
# before they read the task.
task_transitioned = Signal()

_STAMPS: Mapping[str, str] = {
    Status.DISPATCHED: "dispatched_at",
    Status.RUNNING: "started_at",
    Status.COMPLETED: "finished_at",
    Status.FAILED: "finished_at",
    Status.CANCELED: "finished_at",
}
# A row that keeps changing under us (progress updates do not touch status or
# server, so this only happens with real contention on the status itself).
_MAX_TRIES = 5


def transition(
    task_id: int,
    from_statuses: str | Iterable[str],
    to_status: str,
    *,
    message: str,
    data: Mapping[str, Any] | None = None,
    where: Mapping[str, Any] | None = None,
    at: datetime | None = None,
    **fields: Any,
) -> bool:
    """Move the task from one of `from_statuses` to `to_status`; True if it happened.

    `fields` are further `Task` fields to set in the same UPDATE (server,
    prompt_id, error_*, attempts, not_before, F() expressions...). `where` adds
    conditions the row must also meet. See the module docstring for the contract.
    """
    allowed = {from_statuses} if isinstance(from_statuses, str) else set(from_statuses)
    now = at or timezone.now()
    # Error texts come from ComfyUI servers; PostgreSQL refuses NUL in text.
    message = _without_nul(message)
    values: dict[str, Any] = {"status": to_status}
    values |= {name: _without_nul(value) for name, value in fields.items()}
    stamp = _STAMPS.get(to_status)
    if stamp and stamp not in values:
        values[stamp] = now
    for _ in range(_MAX_TRIES):
        seen = (
            Task.objects.filter(pk=task_id, **(where or {}))
            .values("status", "server_id", "slot_held", "team_id", "batch_id")
            .first()
        )
        if seen is None or seen["status"] not in allowed:
            return False
        left_slot = seen["status"] in Status.active() and to_status not in Status.active()
        if left_slot:
            values["slot_held"] = False
        # Compare-and-swap on exactly what we read: if another writer got there
        # first the update matches nothing and we read again.
        with transaction.atomic():
            moved = Task.objects.filter(
                pk=task_id,
                status=seen["status"],
                server_id=seen["server_id"],
                slot_held=seen["slot_held"],
                **(where or {}),
            ).update(**values)
            if moved != 1:
                continue
            TaskEvent.objects.create(
                task_id=task_id,
                at=now,
                from_status=seen["status"],
                to_status=to_status,
                message=message,
                data=dict(data or {}),
            )
            if left_slot and seen["slot_held"] and seen["server_id"] is not None:
                release_slot(seen["server_id"])
            # The change is committed whatever a listener does: each runs on its
            # own (send_robust logs what one raises) and none raises into the caller.
            transaction.on_commit(
                lambda s=seen: _announce(
                    task_id=task_id,
                    from_status=s["status"],
                    to_status=to_status,
                    server_id=s["server_id"],
                    team_id=s["team_id"],
                    batch_id=s["batch_id"],
                    message=message,
                ),
                robust=True,
            )
        return True
    return False


_held = threading.local()


@contextlib.contextmanager
def announcements_held() -> Iterator[None]:
    """Hold this thread's `task_transitioned` sends until the block ends.

    Dispatch claims a batch and then sends it: the listeners (live pages, the
    dashboard) render HTML for every claimed task, which must not stand between
    a freed slot and its next prompt. They hear of the claims right after the
    prompts are on their way, in order.
    """
    if getattr(_held, "queue", None) is not None:  # nested: the outer block sends
        yield
        return
    _held.queue = []
    try:
        yield
    finally:
        queued, _held.queue = _held.queue, None
        for announcement in queued:
            _send(announcement)


def _announce(**announcement: Any) -> None:
    queue = getattr(_held, "queue", None)
    if queue is not None:
        queue.append(announcement)
    else:
        _send(announcement)


def _send(announcement: Mapping[str, Any]) -> None:
    task_transitioned.send_robust(sender=Task, **announcement)


def _without_nul(value: Any) -> Any:
    return value.replace("\x00", "") if isinstance(value, str) else value


def claim_slot(server_id: int, max_inflight: int) -> bool:
    """Take one of the server's `max_inflight` slots; True only if one was free.

    A conditional UPDATE, so concurrent dispatchers never exceed the limit.
    """
    return (
        ServerState.objects.filter(server_id=server_id, inflight__lt=max_inflight).update(
            inflight=F("inflight") + 1
        )
        == 1
    )


def free_slot(task_id: int | None, prompt_id: str) -> bool:
    """The task's prompt is off its server (it ended; the outputs are still to be
    fetched): give its slot back now, so the next prompt need not wait for the
    collection. True if this call freed it (once per claim, whoever asks).

    `task_id` None: the task that sent `prompt_id` (each claim sends a new one), for
    callers that know only the prompt, like the monitor as a prompt's end arrives.
    """
    if task_id is None:
        task_id = Task.objects.filter(prompt_id=prompt_id).values_list("pk", flat=True).first()
        if task_id is None:
            return False
    holding = Task.objects.filter(
        pk=task_id, prompt_id=prompt_id, status__in=Status.active(), slot_held=True
    )
    with transaction.atomic():
        # The conditional UPDATE is the claim on the release (and locks the row, so
        # the server read next is the one whose slot it held).
        if holding.update(slot_held=False) != 1:
            return False
        server_id = Task.objects.filter(pk=task_id).values_list("server_id", flat=True).get()
        if server_id is not None:
            release_slot(server_id)
        record(
            task_id,
            "prompt done on the server: its slot is free, outputs are being collected",
            {"slot_freed": server_id},
        )
    return True


def release_slot(server_id: int) -> None:
    """Give one slot back (never below 0).

    Low level: `transition()` and `free_slot()` call it when a task gives its slot
    up, and dispatch calls it when it claimed a slot but could not claim the task.
    Any other caller would release a slot twice.
    """
    ServerState.objects.filter(server_id=server_id, inflight__gt=0).update(
        inflight=F("inflight") - 1
    )


def record(task_id: int, message: str, data: Mapping[str, Any] | None = None) -> None:
    """A timeline entry without a state change (e.g. "waiting: no free server")."""
    TaskEvent.objects.create(task_id=task_id, message=message, data=dict(data or {}))


# Fields a task's earlier attempt leaves behind that the next attempt must not show.
FRESH_ATTEMPT: Mapping[str, Any] = {
    "server": None,
    "prompt_id": "",
    "progress_node": "",
    "progress_node_type": "",
    "progress_value": 0,
    "progress_max": 0,
    "progress_fraction": 0.0,
    "progress_nodes_done": 0,
    "sending_until": None,
    "collect_requested_at": None,
}


def retry_or_fail(
    task_id: int,
    from_statuses: str | Iterable[str],
    *,
    reason: str,
    error_type: str = "",
    server_id: int | None = None,
    where: Mapping[str, Any] | None = None,
    error_class: str = "",
    decision: str = "",
    avoid_servers: Iterable[int] = (),
) -> str | None:
    """After a failed attempt: back to pending (backoff), failed (attempts used up) or canceled.

    Returns the status the task went to, or None if it was no longer in
    `from_statuses` (someone else moved it). `server_id` defaults to the task's
    server; it is kept in the event's data as `failed_server`. `error_class`
    and `decision` (`tasks.failures`) are set on the task and kept in the
    event's data as `class` and `decision`; `avoid_servers` are further servers
    dispatch should prefer others to (`failed_servers`).
    """
    allowed = {from_statuses} if isinstance(from_statuses, str) else set(from_statuses)
    for _ in range(_MAX_TRIES):
        seen = (
            Task.objects.filter(pk=task_id, **(where or {}))
            .values("status", "attempts", "max_attempts", "cancel_requested", "server_id")
            .first()
        )
        if seen is None or seen["status"] not in allowed:
            return None
        # Dispatch counted this run when it started it; a task put on a server by
        # other means (an admin, a test) has started at least this one.
        attempts = max(seen["attempts"], 1)
        failed_on = server_id if server_id is not None else seen["server_id"]
        data = {"attempt": attempts, "reason": reason, "failed_server": failed_on}
        if error_class:
            data |= {"class": error_class, "decision": decision}
        if avoid_servers:
            data["avoid_servers"] = sorted(set(avoid_servers))
        # The attempts count is part of the condition: two reporters of one
        # failure (dispatch and the reconciler) act on it once.
        guard = {**(where or {}), "attempts": seen["attempts"]}
        if seen["cancel_requested"]:
            to, message, fields = Status.CANCELED, f"canceled ({reason})", {}
        elif attempts >= seen["max_attempts"]:
            history = [*attempt_history(task_id), data]
            to, message = Status.FAILED, f"gave up after {attempts} attempts: {reason}"
            data = {**data, "attempts": history}
            fields = {
                "error_type": error_type or "RetriesExhausted",
                "error_message": message,
                "error_node": "",
                "error_class": error_class,
            }
        else:
            delay = backoff_delay(attempts - 1)
            to = Status.PENDING
            message = f"attempt {attempts} failed, retry in {delay:.1f} s: {reason}"
            if decision:
                message = f"{message} ({error_class}: {decision})"
            fields = {
                **FRESH_ATTEMPT,
                "not_before": timezone.now() + timedelta(seconds=delay),
                "error_class": error_class,
            }
            data = {**data, "retry_in": round(delay, 2)}
        if transition(
            task_id,
            allowed,
            to,
            message=message,
            data=data,
            where=guard,
            attempts=attempts,
            **fields,
        ):
            return to
    return None


def put_back(task_id: int, *, reason: str, where: Mapping[str, Any]) -> str | None:
    """A claimed task that never reached its server: pending again at once, or canceled.

    For a dispatcher that died before the server accepted the prompt: nothing
    ran, so the run dispatch counted when it claimed the task is taken back
    (`attempts - 1`), no backoff is imposed and its server is not held against
    it (no `failed_server`). A task whose cancel was requested is canceled.
    `where` must pin the attempt (its prompt id). Returns the new status, or
    None if the task had moved on.
    """
    for _ in range(_MAX_TRIES):
        seen = Task.objects.filter(pk=task_id, **where).values("cancel_requested").first()
        if seen is None:
            return None
        if seen["cancel_requested"]:
            to, message, fields = Status.CANCELED, f"canceled ({reason})", {}
        else:
            to, message = Status.PENDING, f"{reason}; back in the queue, not counted as a run"
            fields = {**FRESH_ATTEMPT, "not_before": None}
        if transition(
            task_id,
            Status.DISPATCHED,
            to,
            message=message,
            data={"never_sent": True, "reason": reason},
            where={**where, "cancel_requested": seen["cancel_requested"]},
            attempts=Greatest(F("attempts") - 1, 0),
            **fields,
        ):
            return to
    return None


def attempt_history(task_id: int) -> list[dict[str, Any]]:
    """The failed attempts so far, oldest first: {"attempt", "reason", "failed_server", "at"}."""
    events = TaskEvent.objects.filter(task_id=task_id, data__has_key="failed_server")
    return [
        {
            "attempt": event.data.get("attempt"),
            "reason": event.data.get("reason", ""),
            "failed_server": event.data.get("failed_server"),
            "at": event.at.isoformat(),
        }
        for event in events.order_by("at", "pk")
    ]


def failed_servers(task_id: int) -> set[int]:
    """Servers this task already failed on, or that a failure showed unfit for it
    (e.g. less free VRAM than the one it ran out of memory on): dispatch prefers others."""
    rows = TaskEvent.objects.filter(task_id=task_id, data__has_key="failed_server").values_list(
        "data__failed_server", "data__avoid_servers"
    )
    servers: set[int] = set()
    for failed, also in rows:
        servers |= {s for s in [failed, *(also or [])] if isinstance(s, int)}
    return servers
