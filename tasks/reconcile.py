"""Reconciliation (D2): what really became of tasks we believe are on a server.

A missed event (monitor gap, ComfyWeb restart, a server that died with our
prompt on it) must never leave a task stuck. For each `dispatched`/`running`
task of a server, its prompt id is looked up in the server's `/queue`, then
`/history` (in that order: ComfyUI writes history before it drops a prompt
from the running list, so a prompt is never missing from both while alive):

- queued or running → left alone (`dispatched` → `running` if it runs);
- in history, success → its slot freed and output collection
  (`tasks.sweep.prompt_succeeded`), which marks it completed;
- in history, interrupted → `canceled` if we asked, else `failed`;
- in history, error → `failed` with the node and exception;
- in neither, and its dispatcher's lease (`sending_until`) ran out before the
  server accepted it → never sent: `put_back` (pending at once, no run
  counted); while the lease lives, its POST is still on its way: spared;
- in neither otherwise → lost: `retry_or_fail` (pending with backoff, or
  failed), however recently it was sent: with its lease cleared the server
  accepted the prompt, and ComfyUI queues a prompt before it answers the POST,
  so one it has forgotten (it restarted) is gone, not on its way.

A server that knows a prompt whose lease is still set has it: the lease is
cleared (it was sent, whatever became of its dispatcher).

If the server does not answer and the monitor has marked it unhealthy, its
tasks are treated as lost (they are retried elsewhere); if it is merely slow,
nothing is decided now.

Triggers: `reconcile_server(server_id)` after a monitor reconnect (the
execution handler enqueues it), when the monitor first connects to a server
after it started and when it marks a server unhealthy (the watcher enqueues
it), when a dispatcher's lease on one of its tasks ran out (the monitor's
sweep, `tasks.sweep`, enqueues it), and `reconcile_stuck()` every minute for tasks
on a server longer than `COMFYWEB_RECONCILE_AFTER` seconds (default 120), which
also covers a restart of ComfyWeb.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from servers.clients import client_for
from servers.comfyui import ComfyUIError, HistoryEntry
from servers.models import Health, Server
from tasks import failures
from tasks.dispatch import resync_slots
from tasks.enqueue import wake_dispatch
from tasks.error_classes import ErrorClass
from tasks.models import Status, Task
from tasks.sweep import prompt_succeeded
from tasks.transitions import put_back, retry_or_fail, transition

logger = logging.getLogger("tasks.reconcile")
_INTERRUPTED = {
    "class": str(ErrorClass.INTERRUPTED),
    "decision": failures.NOT_RETRIED[ErrorClass.INTERRUPTED],
}


def stuck_after() -> timedelta:
    return timedelta(seconds=int(getattr(settings, "COMFYWEB_RECONCILE_AFTER", 120)))


def reconcile_stuck() -> dict[str, int]:
    """Reconcile every task that has been dispatched/running longer than `stuck_after()`.

    Also corrects server slot counts that drifted (`tasks.dispatch.resync_slots`).
    """
    resync_slots()
    cut = timezone.now() - stuck_after()
    old = Task.objects.filter(status__in=Status.active()).filter(
        Q(started_at__lte=cut) | Q(started_at__isnull=True, dispatched_at__lte=cut)
    )
    totals: dict[str, int] = {}
    # A deleted server leaves its tasks with no server at all: nothing to ask.
    for task_id, prompt_id in old.filter(server__isnull=True).values_list("pk", "prompt_id"):
        if retry_or_fail(
            task_id,
            Status.active(),
            reason="its server was removed",
            where={"prompt_id": prompt_id},
            error_class=ErrorClass.SERVER_LOST,
            decision=failures.RETRY_ELSEWHERE,
        ):
            _count(totals, "lost")
    for server_id in (
        old.filter(server__isnull=False).values_list("server_id", flat=True).distinct()
    ):
        for verdict, n in reconcile_server(server_id, older_than=cut).items():
            totals[verdict] = totals.get(verdict, 0) + n
    return totals


def reconcile_server(server_id: int, *, older_than=None) -> dict[str, int]:
    """Check this server's active tasks against its /queue and /history; verdict counts."""
    server = Server.objects.select_related("state").filter(pk=server_id).first()
    if server is None:
        return {}
    tasks = Task.objects.filter(server_id=server_id, status__in=Status.active())
    if older_than is not None:
        tasks = tasks.filter(
            Q(started_at__lte=older_than)
            | Q(started_at__isnull=True, dispatched_at__lte=older_than)
        )
    rows = list(tasks.values("pk", "prompt_id", "status", "sending_until"))
    if not rows:
        return {}
    try:
        running, pending, history = asyncio.run(_look(server, [r["prompt_id"] for r in rows]))
    except ComfyUIError as error:
        return _unreachable(server, rows, error)
    totals: dict[str, int] = {}
    now = timezone.now()
    for row in rows:
        verdict = _settle(server, row, running, pending, history.get(row["prompt_id"]), now)
        _count(totals, verdict)
    logger.info("reconciled server %s: %s", server.name, totals)
    return totals


async def _look(
    server: Server, prompt_ids: list[str]
) -> tuple[set[str], set[str], dict[str, HistoryEntry]]:
    async with client_for(server, "reconcile") as client:
        queue = await client.get_queue()
        running = {item.prompt_id for item in queue.running}
        pending = {item.prompt_id for item in queue.pending}
        gone = [pid for pid in prompt_ids if pid and pid not in running | pending]
        entries = await asyncio.gather(*(client.get_history(pid) for pid in gone))
    return (
        running,
        pending,
        {pid: entry for pid, entry in zip(gone, entries, strict=False) if entry},
    )


def _settle(
    server: Server,
    row: Mapping[str, Any],
    running: set[str],
    pending: set[str],
    entry: HistoryEntry | None,
    now: datetime,
) -> str:
    task_id, prompt_id = row["pk"], row["prompt_id"]
    guard = {"prompt_id": prompt_id}
    known = prompt_id in running or prompt_id in pending or entry is not None
    if known and row["sending_until"] is not None:
        # The server has it: it was sent, whatever became of its dispatcher.
        Task.objects.filter(pk=task_id, **guard).update(sending_until=None)
    if prompt_id in running:
        if row["status"] == Status.DISPATCHED:
            transition(
                task_id,
                Status.DISPATCHED,
                Status.RUNNING,
                message="running (reconciled)",
                where=guard,
            )
        return "running"
    if prompt_id in pending:
        return "queued"
    if entry is not None and entry.succeeded:
        prompt_succeeded(task_id, prompt_id)
        return "succeeded"
    if entry is not None:
        return _ended_badly(server, task_id, guard, entry)
    if row["status"] == Status.DISPATCHED and row["sending_until"] is not None:
        if row["sending_until"] > now:
            return "in flight"  # its dispatcher lives and is still sending it
        return _never_sent(server, task_id, guard)
    retry_or_fail(
        task_id,
        Status.active(),
        reason=f"prompt lost on {server.name} (in neither its queue nor its history)",
        error_type="PromptLost",
        server_id=server.pk,
        where=guard,
        error_class=ErrorClass.SERVER_LOST,
        decision=failures.RETRY_ELSEWHERE,
    )
    return "lost"


def _never_sent(server: Server, task_id: int, guard: dict[str, str]) -> str:
    # The lease ran out before the server accepted the prompt, and the server
    # does not know it: the dispatcher died before sending it. Nothing ran.
    moved = put_back(
        task_id,
        reason=f"never sent to {server.name} (its dispatcher stopped before the server had it)",
        where={**guard, "sending_until__lte": timezone.now()},
    )
    if moved == Status.PENDING:
        wake_dispatch()
    return "never sent" if moved else "moved on"


def _ended_badly(server: Server, task_id: int, guard: dict[str, str], entry: HistoryEntry) -> str:
    if entry.interrupted:
        asked = Task.objects.filter(pk=task_id, cancel_requested=True).exists()
        if asked:
            transition(
                task_id,
                Status.active(),
                Status.CANCELED,
                message="interrupted (reconciled)",
                data=_INTERRUPTED,
                where=guard,
                error_class=ErrorClass.INTERRUPTED,
                error_type="interrupted",
                error_message="Interrupted on request",
            )
            return "canceled"
        failures.fail(
            task_id,
            ErrorClass.INTERRUPTED,
            message="interrupted on the server (reconciled)",
            where=guard,
            error_type="interrupted",
            error_message="The prompt was interrupted on the server.",
        )
        return "failed"
    error = entry.error or {}
    failure = failures.NodeFailure(
        prompt_id=guard["prompt_id"],
        server_id=server.pk,
        node_id=str(error.get("node_id") or ""),
        node_type=str(error.get("node_type") or ""),
        exception_type=str(error.get("exception_type") or "execution_error"),
        exception_message=str(error.get("exception_message") or entry.status_str or "error"),
        traceback=list(error.get("traceback") or []),
    )
    if failure.error_class is ErrorClass.OUT_OF_MEMORY:
        asyncio.run(failures.free_memory(server))
    moved = failures.node_failed(task_id, failure)
    if moved == Status.PENDING:
        wake_dispatch()
    return "retried" if moved == Status.PENDING else "failed"


def _unreachable(
    server: Server, rows: list[Mapping[str, Any]], error: ComfyUIError
) -> dict[str, int]:
    state = getattr(server, "state", None)
    if state is None or state.health != Health.UNHEALTHY:
        logger.info("reconcile: %s did not answer (%s); deciding later", server.name, error)
        return {"unreachable": len(rows)}
    totals: dict[str, int] = {}
    for row in rows:
        moved = retry_or_fail(
            row["pk"],
            Status.active(),
            reason=f"{server.name} is down: {error}",
            error_type=type(error).__name__,
            server_id=server.pk,
            where={"prompt_id": row["prompt_id"]},
            error_class=ErrorClass.SERVER_LOST,
            decision=failures.RETRY_ELSEWHERE,
        )
        _count(totals, "lost" if moved else "moved on")
    return totals


def _count(totals: dict[str, int], verdict: str) -> None:
    totals[verdict] = totals.get(verdict, 0) + 1
