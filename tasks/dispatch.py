"""Dispatch (D2): send pending tasks to servers — claims under a lock, POSTs in parallel.

One pass of `dispatch_pending()`:

1. **Claim** (short, database only, in one transaction holding the claim lock,
   `claim_lock`, which a dying holder loses at once): read candidates in queue
   order (`tasks.queue.next_candidates`); for each, ask the
   balancer (`pick_server`, avoiding servers the task already failed on), then
   claim a slot on the chosen server (conditional `inflight < max_inflight`
   UPDATE) and then the task (`transition(pending → dispatched)`, a conditional
   UPDATE that must match one row, with the server and a fresh prompt id). If
   the task claim loses (canceled, or taken by another dispatcher), the slot is
   given back. Pick-then-claim means a task the balancer cannot place yet never
   leaves `pending` at all: its waiting reason is kept for the UI instead.
   The lock makes the global limit (`COMFYWEB_MAX_INFLIGHT`, counted as active
   tasks) exact; the conditional updates alone already guarantee that a task is
   never sent twice and a server never gets more than `max_inflight`.
2. **Send** (no lock held, so one slow server delays nobody else's claims):
   upload input images, then POST every claimed prompt concurrently, each with
   its server's monitor `client_id`, our prompt id and `extra_data.comfyweb_task`.
   The task is `dispatched` in the database before its POST, so the monitor's
   `execution_start` for it always finds it. Its `sending_until` lease is
   renewed while the POST is on its way (`_sending`): a dispatcher that dies
   before the server accepted it leaves a lease that runs out within seconds,
   and the monitor's sweep (`tasks.sweep`) has the server asked about it.
3. **Settle**: accepted → the lease cleared, `note_dispatched` (affinity/LRU)
   and a timeline entry; `PromptRejected` → by its class (`tasks.failures`):
   `validation` → `failed` at once with the server's per-node messages,
   `missing_model` → retried on a server that has it;
   an input image that is missing or not the team's upload (`UploadRefused`)
   → `failed` at once, nothing of it sent;
   any other error → `retry_or_fail` (back to pending with backoff, another
   server preferred). A prompt that was accepted for a task canceled meanwhile,
   or whose POST timed out, is deleted from the server's queue (best effort).

Passes repeat until nothing more can be claimed (or a time budget is spent, and
the job re-enqueues itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, OperationalError, connections, transaction
from django.db.models import Count, F, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from fairness.limits import RunningLimits
from servers import fleet, speed
from servers.comfyui import PromptRejected, ServerTimeout
from servers.models import (
    FleetSettings,
    Server,
    ServerState,
    client_id_for,
    leased_client_id,
)
from tasks import failures, queue
from tasks import waiting as waits
from tasks.dispatch_send import Claimed, Outcome, UploadRefused, cleanup, send_all
from tasks.enqueue import wake_dispatch
from tasks.error_classes import ErrorClass
from tasks.models import Status, Task, TaskEvent
from tasks.transitions import (
    announcements_held,
    claim_slot,
    failed_servers,
    record,
    release_slot,
    retry_or_fail,
    transition,
)
from tasks.work import work_of, works_of
from workflows import runnable

logger = logging.getLogger("tasks.dispatch")

# Names the claim lock (hashed to PostgreSQL's advisory lock key).
LOCK_KEY = "comfyweb:tasks:dispatch-claim"
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE when lock_timeout ran out
# Candidates read per pass, and distinct workflows allowed to wait per pass
# (each waiting pick is a recorded balancer decision; tasks of a workflow that
# waits are skipped without asking again — no head-of-line blocking).
CANDIDATES = 200
FIRST_CANDIDATES = 20
MAX_WAITING_WORKFLOWS = 20
# Tasks planned onto busy servers, per server, before a pass stops asking (see
# `_claim_batch`).
PLANNED_PER_SERVER = 8
# Stay well inside django-q's job timeout (300 s); the job re-enqueues itself.
BUDGET_SECONDS = 120.0
# Seconds a claimed task's `sending_until` lease lasts; renewed every third of it
# while its dispatcher sends, so it runs out only if the dispatcher died.
SEND_LEASE = 6.0


def waiting_reason(task: Task) -> str | None:
    """Why a pending task has not been sent, if known (`tasks.waiting`)."""
    return waits.reasons([task]).get(task.pk)


def global_limit() -> int:
    return int(getattr(settings, "COMFYWEB_MAX_INFLIGHT", 64))


def dispatch_pending(*, budget: float = BUDGET_SECONDS) -> int:
    """Send as many pending tasks as servers and limits allow; how many were sent."""
    started = time.monotonic()
    sent = 0
    while True:
        # Pages hear of the claims once the prompts are on their way (rendering
        # them first would delay every prompt of the batch).
        with announcements_held():
            claimed = claim_batch()
            if not claimed:
                return sent
            with _sending(claimed):
                outcomes = asyncio.run(send_all(claimed))
        sent += settle(outcomes)
        if not claimed.more:
            # Nothing else could go when the pass ended; whatever changed since
            # (a slot freed, a task submitted) woke dispatch again itself.
            return sent
        if time.monotonic() - started > budget:
            wake_dispatch()
            return sent


# -- 1. claim -------------------------------------------------------------------------


class Claims(list[Claimed]):
    """The claims of one pass. `more`: the pass ran out of room or of the candidates
    it reads, so another pass may claim more; otherwise every other candidate was
    asked about and must wait (for a busy server, a limit, a server able to run it)."""

    more: bool = False


def claim_batch() -> Claims:
    """Claim as many (task, server slot) pairs as may be sent now, under the lock."""
    with claim_lock() as held:
        # Not held: another dispatcher is claiming, and it loops until nothing is left.
        return _claim_batch() if held else Claims()


@contextlib.contextmanager
def claim_lock(wait: float = 10.0) -> Iterator[bool]:
    """The cluster-wide claim lock; yields whether it was acquired within `wait`.

    It is a database transaction that holds a lock: on PostgreSQL a
    transaction-level advisory lock, on SQLite the write lock its IMMEDIATE
    transactions take at BEGIN (there `wait` is the connection's busy timeout).
    The claims made under it commit together when it is released, and a holder
    that dies (killed mid-claim) loses it at once, because the database ends
    the transaction of a closed connection: nothing half-claimed stays, and
    the next dispatcher does not wait out a TTL.
    """
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(transaction.atomic())
        except OperationalError:  # SQLite: the write lock stayed busy for its whole timeout
            logger.warning("dispatch claim lock busy", exc_info=True)
            yield False
            return
        yield _advisory_lock(wait)


def _advisory_lock(wait: float) -> bool:
    """Take the claim lock inside the current transaction (PostgreSQL; elsewhere a no-op)."""
    connection = transaction.get_connection()
    if connection.vendor != "postgresql":
        return True
    key = zlib.crc32(LOCK_KEY.encode())
    try:
        # A savepoint: a timed-out wait undoes only itself, and takes its
        # lock_timeout with it.
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL lock_timeout = {max(1, round(wait * 1000))}")
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])
            cursor.execute("SET LOCAL lock_timeout TO DEFAULT")
    except OperationalError as error:
        if getattr(error.__cause__, "sqlstate", None) != LOCK_NOT_AVAILABLE:
            raise
        return False
    return True


def resync_slots() -> int:
    """Set each server's `inflight` to its number of tasks holding a slot where they differ.

    They only differ after a hand edit, or a slot claimed outside the claim
    lock's transaction and not followed by its task claim. Under the claim lock,
    since claims are the only increments and every release commits together
    with its task's `slot_held` change.
    """
    on_server = (
        Task.objects.filter(
            server_id=OuterRef("server_id"), status__in=Status.active(), slot_held=True
        )
        .order_by()
        .values("server_id")
        .annotate(n=Count("pk"))
        .values("n")
    )
    actual = Coalesce(Subquery(on_server), 0)
    with claim_lock() as held:
        if not held:
            return 0
        fixed = ServerState.objects.exclude(inflight=actual).update(inflight=actual)
    if fixed:
        logger.warning("corrected the in-flight count of %d server(s)", fixed)
    return fixed


def _claim_batch() -> Claims:
    active, free = _active_count(), _free_slots()
    room = min(global_limit() - active, free)
    waits.note_fleet(_no_room(active) if room <= 0 else None)
    claimed = Claims()
    if room <= 0:
        return claimed
    # (workflow, servers to avoid) that found no server this pass: the same
    # needs get the same answer, so later tasks like them are not asked about.
    waiting: set[tuple[str, frozenset[int]]] = set()
    servers: dict[int, _ServerInfo] = {}
    deployment_id: uuid.UUID | None = None  # the prompts' client ids begin with it
    plan = fleet.Plan.load(predicting=True, hold_records=True)
    plan = plan.with_backlog(_backlog(plan))
    # Tasks planned onto busy servers in a row: past this many, the free slots left
    # are on servers no task of this pass wants, and the rest are not asked about.
    planned, planned_limit = 0, PLANNED_PER_SERVER * max(1, len(plan.servers))
    # Priority is served first: once a task waits for a busy server, tasks of a
    # lower priority are not sent to the free ones it left.
    waiting_priority: int | None = None
    # The fleet's node catalogues, read once per pass: a server whose catalogue
    # rejects a graph's inputs is not offered it (it would fail, not retry).
    catalogues: runnable.FleetView | None = None
    # Teams' and users' running limits, counted once per pass and kept up as it claims.
    limits = RunningLimits.load()
    candidates = _Candidates(limits.exclusion())
    for task in candidates:
        if len(claimed) >= room:
            claimed.more = True
            break
        if len(waiting) >= MAX_WAITING_WORKFLOWS:
            break
        if planned >= planned_limit:
            break
        if waiting_priority is not None and task.effective_priority < waiting_priority:
            break  # a higher priority waits for a busy server: lower ones wait too
        if limits.held_back(task.team_id, task.submitter_id):
            continue  # reached its limit in this pass; its page says so (`tasks.waiting`)
        # Only a task that ran before can have failed somewhere (one query fewer each).
        avoid = frozenset(failed_servers(task.pk)) if task.attempts else frozenset()
        if task.workflow_key and (task.workflow_key, avoid) in waiting:
            continue
        catalogues = catalogues or runnable.FleetView.of(plan.servers.values())
        work = work_of(task)
        graph = GraphOnDemand(task)  # what was learned of its workflow key needs no graph
        decision = plan.pick(
            graph,
            workflow_key=task.workflow_key,
            affinity_key=task.affinity_key,
            avoid=avoid,
            refused_by=catalogues.refusals(graph, task.workflow_key),
            work=work,
        )
        if decision.planned_on is not None:
            # A busy server will finish it first: it waits for that one.
            plan.planned(decision.planned_on, plan.seconds(decision.planned_on, work))
            planned += 1
            waiting_priority = task.effective_priority  # aged: `queue.in_dispatch_order`
            continue
        if decision.waiting:
            waiting.add((task.workflow_key, avoid))
            _note_waiting(task, decision.reason)
            continue
        assert decision.server_id is not None
        deployment_id = deployment_id or FleetSettings.load().deployment_id
        info = servers.get(decision.server_id) or _server_info(decision.server_id, deployment_id)
        if info is None:
            continue
        servers[info.id] = info
        claim = _claim(task, info, decision)
        if claim is None:
            plan.reread(info.id)
            continue
        plan.claimed(info.id, plan.seconds(info.id, work))
        limits.started(task.team_id, task.submitter_id)
        planned = 0
        claimed.append(claim)
    else:
        claimed.more = candidates.cut_off
    plan.record_decisions()
    return claimed


class _Candidates:
    """The pending tasks in dispatch order: the first few, then, if the pass gets
    that far, the rest up to `CANDIDATES` (most passes fill a freed slot or two).
    `held_back`: tasks of teams and users at their running limit, left out.
    `cut_off`: more pending tasks may follow the last one read."""

    def __init__(self, held_back: Q | None = None) -> None:
        self._held_back = held_back
        self.cut_off = False

    def __iter__(self) -> Iterator[Task]:
        seen: set[int] = set()
        for limit in (FIRST_CANDIDATES, CANDIDATES):
            batch = queue.next_candidates(limit, held_back=self._held_back)
            for task in batch:
                if task.pk not in seen:
                    seen.add(task.pk)
                    yield task
            if len(batch) < limit:
                return
        self.cut_off = True


class GraphOnDemand(Mapping[str, Any]):
    """A candidate's graph, read from the database the first time it is looked at.

    Candidates are read without their graphs (`queue.next_candidates`): a pass
    asks about up to `CANDIDATES` tasks, what it needs of a graph (its
    requirements, the catalogues' answers) is remembered by workflow key and its
    work is kept on the task (`tasks.work`), so most graphs are never looked at.
    """

    def __init__(self, task: Task) -> None:
        self._task = task

    def _graph(self) -> Mapping[str, Any]:
        return self._task.graph  # a deferred field: one query, then kept on the task

    def __getitem__(self, key: str) -> Any:
        return self._graph()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._graph())

    def __len__(self) -> int:
        return len(self._graph())


def _backlog(plan: fleet.Plan) -> dict[int, float]:
    """Server id -> predicted seconds until the prompts on it now are done: each
    running one's predicted time less what it has run, each waiting one's whole."""
    now = timezone.now()
    backlog: dict[int, float] = {}
    on_servers = list(
        Task.objects.filter(status__in=Status.active(), slot_held=True, server__isnull=False)
        .order_by()
        .values_list("pk", "server_id", "speed_key", "work_units", "started_at")
    )
    works = works_of((pk, key, units) for pk, _sid, key, units, _at in on_servers)
    for pk, server_id, _key, _units, started_at in on_servers:
        if pk not in works:
            continue  # deleted meanwhile
        seconds = plan.seconds(server_id, works[pk])
        if started_at is not None:
            seconds = speed.remaining_seconds(seconds, (now - started_at).total_seconds())
        backlog[server_id] = backlog.get(server_id, 0.0) + seconds
    return backlog


def _claim(task: Task, server: _ServerInfo, decision: fleet.Decision) -> Claimed | None:
    if not claim_slot(server.id, server.max_inflight):
        return None  # filled up since the pick; the next pass asks again
    prompt_id = Task.new_prompt_id()
    moved = transition(
        task.pk,
        Status.PENDING,
        Status.DISPATCHED,
        message=f"dispatched to {server.name}: {decision.reason}",
        data={
            "server": server.id,
            "prompt_id": prompt_id,
            "mode": decision.mode,
            "attempt": task.attempts + 1,
        },
        server_id=server.id,
        prompt_id=prompt_id,
        attempts=F("attempts") + 1,  # `attempts` counts runs started: 1 on the first
        sending_until=timezone.now() + timedelta(seconds=SEND_LEASE),
        slot_held=True,  # the slot claimed above, now the task's
        client_id=server.client_id,
        collect_requested_at=None,
        cancel_requested=False,
        error_type="",
        error_message="",
        error_node="",
        error_class="",
    )
    if not moved:
        release_slot(server.id)  # canceled or taken meanwhile: the slot was never used
        return None
    return Claimed(
        task_id=task.pk,
        team_id=task.team_id,
        prompt_id=prompt_id,
        graph=task.graph,
        affinity_key=task.affinity_key,
        server_id=server.id,
        server_name=server.name,
        base_url=server.base_url,
        headers=server.headers,
        client_id=server.client_id,
    )


@dataclass(frozen=True)
class _ServerInfo:
    id: int
    name: str
    base_url: str
    headers: dict[str, str] = field(default_factory=dict)
    client_id: str = ""
    max_inflight: int = 1


def _server_info(server_id: int, deployment_id: uuid.UUID) -> _ServerInfo | None:
    server = Server.objects.select_related("lease").filter(pk=server_id).first()
    if server is None:
        return None
    # Its prompts carry the client id of the monitor leasing it, whose socket gets
    # their events: the last holder's even while its renewal is late (a busy monitor
    # still watches). Never leased: the server's own; whichever monitor takes it next
    # reconciles what it missed.
    lease = getattr(server, "lease", None)
    if lease is not None and lease.monitor_id:
        client_id = leased_client_id(server.pk, deployment_id, lease.monitor_id)
    else:
        client_id = client_id_for(server.pk, deployment_id)
    return _ServerInfo(
        id=server.pk,
        name=server.name,
        base_url=server.base_url,
        headers=dict(server.auth_headers or {}),
        client_id=client_id,
        max_inflight=server.max_inflight,
    )


def _active_count() -> int:
    """Prompts on servers (the global limit's count): tasks holding a slot."""
    return Task.objects.filter(status__in=Status.active(), slot_held=True).count()


def _free_slots() -> int:
    rows = ServerState.objects.filter(
        server__enabled=True, inflight__lt=F("server__max_inflight")
    ).values_list("server__max_inflight", "inflight")
    return sum(limit - used for limit, used in rows)


def _no_room(active: int) -> str:
    """Why not one task can be claimed: the global limit, or no free slot anywhere."""
    if active >= global_limit():
        return f"{active} tasks are on servers, the most allowed at once (COMFYWEB_MAX_INFLIGHT)"
    if not Server.objects.enabled().exists():
        return "no servers are enabled"
    return "every enabled server is full"


def _note_waiting(task: Task, reason: str) -> None:
    """Keep why the task waits: for its page (`waiting_reason`) and once in its timeline."""
    waits.note_workflow(task.workflow_key, reason)
    message = f"waiting: {reason}"
    last = TaskEvent.objects.filter(task_id=task.pk).order_by("-at", "-pk").first()
    if last is None or last.message != message:
        record(task.pk, message, {"waiting": True})


# -- 2. send --------------------------------------------------------------------------


@contextlib.contextmanager
def _sending(claimed: list[Claimed]) -> Iterator[None]:
    """Renew the claimed tasks' `sending_until` lease while their POSTs are on the way.

    From a thread, since the sending runs in `asyncio.run` without the database.
    If this process dies, the renewals stop and the leases run out within
    `SEND_LEASE` seconds: the monitor's sweep then has the server asked whether
    it got the prompts (`tasks.reconcile`).
    """
    stop = threading.Event()
    ids = [claim.task_id for claim in claimed]
    renewer = threading.Thread(
        target=_renew_leases, args=(ids, stop), name="dispatch-lease", daemon=True
    )
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join()


def _renew_leases(task_ids: list[int], stop: threading.Event) -> None:
    try:
        while not stop.wait(SEND_LEASE / 3):
            try:
                with transaction.atomic():
                    # Rows another transaction holds are skipped (their next renewal
                    # comes soon): a renewal never waits, so it never holds up a send.
                    unaccepted = (
                        Task.objects.select_for_update(skip_locked=True)
                        .filter(pk__in=task_ids, status=Status.DISPATCHED)
                        .exclude(sending_until=None)
                        .values_list("pk", flat=True)
                    )
                    Task.objects.filter(pk__in=list(unaccepted)).update(
                        sending_until=timezone.now() + timedelta(seconds=SEND_LEASE)
                    )
            except DatabaseError:
                logger.warning(
                    "could not renew the send lease of tasks %s", task_ids, exc_info=True
                )
    finally:
        connections.close_all()  # this thread's own


# -- 3. settle ------------------------------------------------------------------------


def settle(outcomes: Iterable[Outcome]) -> int:
    """Record what each POST came to; how many prompts were accepted."""
    accepted: list[Outcome] = []
    orphans: list[Claimed] = []
    for outcome in outcomes:
        claim = outcome.claimed
        if outcome.error is None:
            accepted.append(outcome)
        elif isinstance(outcome.error, PromptRejected):
            _rejected(claim, outcome.error)
        elif isinstance(outcome.error, UploadRefused):  # missing, or not the team's
            failures.fail(
                claim.task_id,
                ErrorClass.VALIDATION,
                message=str(outcome.error),
                where={"prompt_id": claim.prompt_id},
                error_type=type(outcome.error).__name__,
                error_message=str(outcome.error),
            )
        else:
            if isinstance(outcome.error, ServerTimeout):
                orphans.append(claim)  # it may have been queued after all
            retry_or_fail(
                claim.task_id,
                Status.active(),
                reason=f"{claim.server_name}: {outcome.error}",
                error_type=type(outcome.error).__name__,
                server_id=claim.server_id,
                where={"prompt_id": claim.prompt_id},
                error_class=ErrorClass.SERVER_LOST,
                decision=failures.RETRY_ELSEWHERE,
            )
    orphans += _note_accepted(accepted)
    if orphans:
        asyncio.run(cleanup(orphans))
    return len(accepted)


def _note_accepted(accepted: Sequence[Outcome]) -> list[Claimed]:
    """End the send leases of the prompts the servers accepted and note them on their
    timelines in one transaction, then their servers' affinity (were three commits a
    prompt); returns the claims no longer ours (canceled while sent)."""
    orphans: list[Claimed] = []
    events: list[TaskEvent] = []
    with transaction.atomic():
        for outcome in accepted:
            claim = outcome.claimed
            if _accepted(claim):
                message = f"accepted by {claim.server_name}"
                events.append(TaskEvent(task_id=claim.task_id, message=message, data=outcome.data))
            else:
                orphans.append(claim)
        TaskEvent.objects.bulk_create(events)
    # Outside that transaction: holding its tasks' rows while waiting for server
    # state rows (which the monitor's checks write many at once) could deadlock.
    # The last prompt sent to a server is the one its affinity remembers.
    last_sent = {o.claimed.server_id: o.claimed.affinity_key for o in accepted}
    for server_id, affinity_key in last_sent.items():
        fleet.note_dispatched(server_id, affinity_key)
    return orphans


def _accepted(claim: Claimed) -> bool:
    """The server accepted the prompt: end the send lease; False if the task is no longer ours.

    Canceled while we sent it, or retried under another prompt id: the prompt
    must not run. (Finished already is fine: a fast prompt can end before this.)
    """
    return bool(
        Task.objects.filter(pk=claim.task_id, prompt_id=claim.prompt_id)
        .exclude(status=Status.CANCELED)
        .update(sending_until=None)
    )


def _rejected(claim: Claimed, error: PromptRejected) -> None:
    # `validation` fails; `missing_model` is retried where the model is (tasks.failures).
    moved = failures.prompt_rejected(
        claim.task_id, claim.prompt_id, claim.server_id, claim.server_name, error
    )
    if moved == Status.PENDING:
        wake_dispatch()
