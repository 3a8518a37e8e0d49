"""The monitor's execution handler (A6): ComfyUI events → task state and live progress.

`TaskEventHandler` is the monitor's `WorkHooks` (registered in `TasksConfig.ready()`);
the monitor hands it every event that names a prompt, server by server and in
order, on the one event loop that serves the whole fleet. So the handler keeps per-prompt state
in memory, touches the database only for state changes and throttled progress
writes (through `database_sync_to_async`), and leaves slow work (downloading
outputs, reconciling) to django-q jobs.

Events are matched to tasks by (server id, prompt id): the prompt ids are ours.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.utils import timezone

from accounting.server_clock import note_server_run
from servers import speed
from servers.comfyui import events
from servers.models import Server
from servers.monitor.work import WorkHooks
from servers.requirements import Requirements
from tasks import dispatch_here, enqueue, failures, previews, queue, sweep, task_updates
from tasks.enqueue import RECONCILE_SERVER, wake_dispatch
from tasks.error_classes import ErrorClass
from tasks.models import Status, Task
from tasks.progress import BROWSER_INTERVAL, DATABASE_INTERVAL, Clock, Coalescer, TaskProgress
from tasks.transitions import transition

logger = logging.getLogger(__name__)

RECONCILE_JOB = RECONCILE_SERVER
# An unknown prompt is looked up again after this long: its task may have been
# saved a moment after the server started sending (and most of them are not ours).
UNKNOWN_TTL = 5.0
# Prompt ends handed to dispatch as they arrived and not yet handled (never, for a
# prompt not ours): past this many, forgotten, at the cost of one more wake-up each.
ENDED_EARLY_KEPT = 1000
ACTIVE = [Status.DISPATCHED, Status.RUNNING]
PROGRESS_EVENTS = (
    events.ExecutionCached,
    events.Executing,
    events.Progress,
    events.ProgressState,
    events.Executed,
)
# Dispatch is woken this long after a retry's backoff ends, so that it finds it over.
RETRY_WAKE_MARGIN = 0.05


@dataclass
class Tracked:
    """A prompt of ours that is on a server, with what the browsers last saw."""

    server_id: int
    prompt_id: str
    progress: TaskProgress
    status: str
    started_at: datetime | None
    server: str
    # The server's own clock (ms) at execution_start and execution_success, and the
    # nodes it served from cache: how long the run took, for `servers.speed`.
    run_started_ms: int | None = None
    run_ended_ms: int | None = None
    cached: frozenset[str] = frozenset()

    @property
    def task_id(self) -> int:
        return self.progress.task_id

    def run_seconds(self) -> float | None:
        """How long the server took, if it ran the work itself (no sampler cached)."""
        if self.run_started_ms is None or self.run_ended_ms is None:
            return None
        if self.cached & speed.stepping_nodes(self.progress.graph):
            return None
        return (self.run_ended_ms - self.run_started_ms) / 1000


class TaskEventHandler(WorkHooks):
    def __init__(
        self,
        *,
        clock: Clock = time.monotonic,
        browser_interval: float = BROWSER_INTERVAL,
        database_interval: float = DATABASE_INTERVAL,
    ) -> None:
        self.clock = clock
        self._tracked: dict[tuple[int, str], Tracked] = {}
        self._unknown: dict[tuple[int, str], float] = {}
        self._browser = Coalescer(browser_interval, clock)
        self._database = Coalescer(database_interval, clock)
        # (kind, task id) → the trailing send waiting out its coalescing window.
        self._timers: dict[tuple[str, int], tuple[asyncio.Task, Callable[[], Awaitable]]] = {}
        # Retry backoffs: ended up to here are dispatched; the next one's end and its timer.
        self._backoffs_seen: datetime | None = None
        self._retry_wake: tuple[datetime, asyncio.TimerHandle] | None = None
        # As events arrive (`arrived`): server id -> the prompt it said succeeded, and
        # the prompts whose end was handed to dispatch then.
        self._succeeded: dict[int, str] = {}
        self._ended_early: set[str] = set()

    def arrived(self, server_id: int, event: events.Event) -> None:
        """A prompt that ended well has its slot freed and the next one dispatched as
        its end arrives, not once `handle` has got through the server's events ahead
        of it: each may wait on the database, which a busy monitor shares between
        every server (at 20 servers, ~1.5 s from a prompt's end to its handling).

        ComfyUI sends `execution_success`, then `executing` with no node as the
        prompt's last message (a failed one ends without the first: `handle` deals
        with it). Dispatch frees the slot by the prompt id, so a prompt whose first
        events are still queued needs nothing `handle` has learned yet.
        """
        if isinstance(event, events.ExecutionSuccess) and event.prompt_id:
            self._succeeded[server_id] = event.prompt_id
        elif events.is_prompt_end(event) and self._succeeded.get(server_id) == event.prompt_id:
            del self._succeeded[server_id]
            if len(self._ended_early) >= ENDED_EARLY_KEPT:
                self._ended_early.clear()  # not handled (unknown prompts): an extra wake at most
            self._ended_early.add(event.prompt_id)
            dispatch_here.prompt_ended(event.prompt_id)

    async def handle(self, server_id: int, event: events.Event) -> None:
        try:
            await self._handle(server_id, event)
        except Exception:
            # One bad event must not stop the monitor's loop; reconciliation
            # catches up with whatever state change it missed.
            logger.exception("handling %s from server %s failed", event.type, server_id)

    async def tick(self) -> None:
        """Called by the monitor's loop every tick: what must not wait for an event.

        Hand-offs a broker blip or a dead worker dropped are queued again
        (`tasks.sweep`), and dispatch is woken when a retry's backoff ends: at
        once for one that ended since the last tick, by a timer for the next.
        """
        await database_sync_to_async(sweep.sweep)()
        await self._check_backoffs()

    def server_can_take_work(self, server_id: int) -> None:
        """Sync: the server was re-admitted or its capabilities are known: wake dispatch."""
        wake_dispatch()  # never raises: the one-minute schedule catches up

    def server_needs_reconcile(self, server_id: int) -> None:
        """Sync: events of the server's prompts may be missed or lost: queue reconciliation."""
        enqueue.enqueue(RECONCILE_JOB, server_id)  # never raises; the minutely reconcile catches up

    def others_prompts_on(self, server_id: int, client_id: str) -> bool:
        """Sync: tasks whose prompt is on the server, sent with another client id."""
        on_server = Task.objects.filter(
            server_id=server_id, status__in=Status.active(), slot_held=True
        )
        return on_server.exclude(client_id=client_id).exists()

    def pending_work(self) -> list[tuple[Requirements, int]]:
        """Sync: what the pending tasks need, for sizing container pools."""
        return queue.pending_work()

    def collecting_by_server(self) -> dict[int, int]:
        """Sync: tasks whose outputs are still fetched from a server, for its idleness."""
        return queue.collecting_by_server()

    async def _check_backoffs(self) -> None:
        now = timezone.now()
        ended, upcoming = await database_sync_to_async(sweep.retry_times)(self._backoffs_seen, now)
        self._backoffs_seen = max(now, self._backoffs_seen or now)
        if ended:
            await database_sync_to_async(wake_dispatch)()
        if upcoming is not None:
            self._wake_dispatch_at(upcoming)

    def _wake_dispatch_at(self, when: datetime) -> None:
        if self._retry_wake is not None:
            if self._retry_wake[0] <= when:
                return  # an earlier (or the same) one is set; the next is armed when it fires
            self._retry_wake[1].cancel()
        delay = (when - timezone.now()).total_seconds() + RETRY_WAKE_MARGIN
        handle = asyncio.get_running_loop().call_later(max(0.0, delay), self._backoff_ended)
        self._retry_wake = (when, handle)

    def _backoff_ended(self) -> None:
        self._retry_wake = None
        asyncio.ensure_future(self._check_backoffs()).add_done_callback(_log_failure)

    async def flush(self) -> None:
        """Send every trailing update now (tests, shutdown)."""
        for key, (timer, send) in list(self._timers.items()):
            timer.cancel()
            self._timers.pop(key, None)
            (self._browser if key[0] != "db" else self._database).sent(key)
            await send()

    # -- dispatching on the event type ------------------------------------------------

    async def _handle(self, server_id: int, event: events.Event) -> None:
        if isinstance(event, events.Reconnected):
            # Events may have been missed during the gap: let /queue and /history decide.
            await database_sync_to_async(enqueue.enqueue)(RECONCILE_JOB, server_id)
            return
        if event.prompt_id is None:
            return
        tracked = await self._find(server_id, event.prompt_id, always=_is_milestone(event))
        if tracked is None:
            return
        if isinstance(event, events.ExecutionHalted):
            # Before the end moves the task: GPU time is billed by the server's own clock
            # (for a success, as its end is handled: `_succeeded`).
            await database_sync_to_async(note_server_run)(
                tracked.task_id, tracked.run_started_ms, event.timestamp
            )
        if isinstance(event, events.ExecutionStart):
            tracked.run_started_ms = event.timestamp
            await self._start(tracked)
        elif isinstance(event, events.ExecutionError):
            await self._failed(tracked, event)
        elif isinstance(event, events.ExecutionInterrupted):
            await self._interrupted(tracked, event)
        elif isinstance(event, events.ExecutionSuccess):
            tracked.run_ended_ms = event.timestamp
            tracked.progress.succeeded = True
            await self._progress_changed(tracked)
        elif isinstance(event, events.Executing) and event.finished:
            await self._prompt_end(tracked)
        elif isinstance(event, events.PreviewImage):
            await self._preview(tracked, event)
        elif isinstance(event, PROGRESS_EVENTS):
            if tracked.status == Status.DISPATCHED:
                await self._start(tracked)  # execution_start was missed
            if isinstance(event, events.ExecutionCached):
                tracked.cached |= frozenset(event.nodes)
            if isinstance(event, events.Executed):
                names = [ref.filename for ref in event.files]
                tracked.progress.record_outputs(event.node, names)
                changed = bool(names)
            else:
                changed = tracked.progress.apply(event)
            if changed:
                await self._progress_changed(tracked)

    async def _find(self, server_id: int, prompt_id: str, *, always: bool) -> Tracked | None:
        key = (server_id, prompt_id)
        if key in self._tracked:
            return self._tracked[key]
        seen = self._unknown.get(key)
        if seen is not None and not always and self.clock() - seen < UNKNOWN_TTL:
            return None
        tracked = await database_sync_to_async(_load)(server_id, prompt_id)
        if tracked is None:
            logger.debug("ignoring events of unknown prompt %s on server %s", prompt_id, server_id)
            self._remember_unknown(key)
            return None
        self._unknown.pop(key, None)
        self._tracked[key] = tracked
        return tracked

    def _remember_unknown(self, key: tuple[int, str]) -> None:
        now = self.clock()
        if len(self._unknown) > 1000:
            self._unknown = {k: t for k, t in self._unknown.items() if now - t < UNKNOWN_TTL}
        self._unknown[key] = now

    # -- state changes ----------------------------------------------------------------

    async def _start(self, tracked: Tracked) -> None:
        # Browsers hear of the change from `task_transitioned` (tasks.task_updates).
        now = timezone.now()
        if await database_sync_to_async(transition)(
            tracked.task_id,
            [Status.DISPATCHED],
            Status.RUNNING,
            message=f"Started on {tracked.server}",
            where={"prompt_id": tracked.prompt_id},
            at=now,
        ):
            tracked.started_at = now
        tracked.status = Status.RUNNING

    async def _failed(self, tracked: Tracked, event: events.ExecutionError) -> None:
        # By its class (`tasks.failures`): a node's own error fails, running out of
        # memory frees the server and retries.
        failure = failures.NodeFailure(
            prompt_id=tracked.prompt_id,
            server_id=tracked.server_id,
            node_id=event.node_id or "",
            node_type=event.node_type or tracked.progress.node_type,
            exception_type=event.exception_type or "",
            exception_message=event.exception_message,
            traceback=list(event.traceback),
        )
        self._stop_updates(tracked)
        tracked.progress.ended = True
        if failure.error_class is ErrorClass.OUT_OF_MEMORY:
            # Before the retry can be sent anywhere, the server that ran out is freed.
            server = await Server.objects.filter(pk=tracked.server_id).afirst()
            if server is not None:
                await failures.free_memory(server)
        moved = await database_sync_to_async(failures.node_failed)(
            tracked.task_id, failure, **_progress_fields(tracked.progress)
        )
        tracked.status = moved or Status.FAILED
        if moved:
            await sync_to_async(previews.discard)(tracked.task_id)
            await database_sync_to_async(wake_dispatch)()

    async def _interrupted(self, tracked: Tracked, event: events.ExecutionInterrupted) -> None:
        requested = await database_sync_to_async(_cancel_requested)(tracked.task_id)
        message = (
            "Interrupted on request"
            if requested
            else "Interrupted by the server (ComfyWeb did not ask for it)"
        )
        await self._finish(
            tracked,
            Status.CANCELED,
            message=message,
            data={
                "node_id": event.node_id,
                "node_type": event.node_type,
                "requested": requested,
                "class": str(ErrorClass.INTERRUPTED),
                "decision": failures.NOT_RETRIED[ErrorClass.INTERRUPTED],
            },
            error_class=str(ErrorClass.INTERRUPTED),
            error_type="interrupted",
            error_message=message,
        )

    async def _finish(self, tracked: Tracked, status: Status, **kwargs: Any) -> None:
        self._stop_updates(tracked)
        tracked.progress.ended = True
        progress = tracked.progress
        changed = await database_sync_to_async(transition)(
            tracked.task_id,
            ACTIVE,
            status,
            where={"prompt_id": tracked.prompt_id},
            **_progress_fields(progress),
            **kwargs,
        )
        tracked.status = status
        if changed:
            await sync_to_async(previews.discard)(tracked.task_id)
            # The slot is free again: let the next task have it now.
            await database_sync_to_async(wake_dispatch)()

    async def _prompt_end(self, tracked: Tracked) -> None:
        # `executing null`: the last message of the prompt; history is written by now.
        self._tracked.pop((tracked.server_id, tracked.prompt_id), None)
        self._stop_updates(tracked)
        if tracked.progress.succeeded:
            if tracked.prompt_id in self._ended_early:
                self._ended_early.discard(tracked.prompt_id)  # handed over as it arrived
            else:
                dispatch_here.prompt_ended(tracked.prompt_id)
            # One trip to the database thread: each waits behind every other server's.
            await database_sync_to_async(_succeeded)(tracked)
        elif not tracked.progress.ended:
            # Ended without success, error or interrupt that we saw: ask the server.
            await database_sync_to_async(enqueue.enqueue)(RECONCILE_JOB, tracked.server_id)

    # -- progress and previews (coalesced) --------------------------------------------

    async def _progress_changed(self, tracked: Tracked) -> None:
        await self._offer(self._browser, ("browser", tracked.task_id), self._send_progress, tracked)
        await self._offer(self._database, ("db", tracked.task_id), self._write_progress, tracked)

    async def _preview(self, tracked: Tracked, event: events.PreviewImage) -> None:
        stored = await sync_to_async(previews.store)(tracked.task_id, event.mime_type, event.image)
        if stored is not None:
            await self._offer(
                self._browser, ("preview", tracked.task_id), self._send_preview, tracked
            )

    async def _offer(
        self,
        coalescer: Coalescer,
        key: tuple[str, int],
        send: Callable[[Tracked], Awaitable[None]],
        tracked: Tracked,
    ) -> None:
        delay = coalescer.offer(key)
        if delay == 0.0:
            late = self._timers.pop(key, None)  # an overdue trailing send, now this one
            if late is not None:
                late[0].cancel()
            await send(tracked)
        elif delay is not None:
            sender = _bound(send, tracked)
            self._timers[key] = (asyncio.create_task(self._trailing(key, delay, sender)), sender)

    async def _trailing(
        self, key: tuple[str, int], delay: float, send: Callable[[], Awaitable]
    ) -> None:
        await asyncio.sleep(delay)
        self._timers.pop(key, None)
        (self._browser if key[0] != "db" else self._database).sent(key)
        try:
            await send()
        except Exception:
            logger.exception("trailing %s update of task %s failed", *key)

    def _stop_updates(self, tracked: Tracked) -> None:
        for kind, coalescer in (
            ("browser", self._browser),
            ("preview", self._browser),
            ("db", self._database),
        ):
            key = (kind, tracked.task_id)
            timer = self._timers.pop(key, None)
            if timer is not None:
                timer[0].cancel()
            coalescer.forget(key)

    async def _send_progress(self, tracked: Tracked) -> None:
        await task_updates.apublish_progress(
            task_updates.progress_view(
                tracked.progress,
                status=tracked.status,
                started_at=tracked.started_at,
                server=tracked.server,
                prompt_id=tracked.prompt_id,
            )
        )

    async def _send_preview(self, tracked: Tracked) -> None:
        await task_updates.apublish_preview(tracked.task_id)

    async def _write_progress(self, tracked: Tracked) -> None:
        await database_sync_to_async(_save_progress)(
            tracked.task_id, **_progress_fields(tracked.progress)
        )


def _progress_fields(progress: TaskProgress) -> dict[str, Any]:
    """The Task columns that keep a run's progress: its node and its `Numbers`."""
    numbers = progress.numbers()
    return {
        "progress_node": progress.node[:64],
        "progress_node_type": progress.node_type[:100],
        "progress_value": numbers.value,
        "progress_max": numbers.max,
        "progress_nodes_done": numbers.nodes_done,
        "progress_fraction": numbers.fraction,
    }


def _log_failure(future: asyncio.Future) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.error("waking dispatch after a retry backoff failed", exc_info=future.exception())


def _bound(send: Callable[[Tracked], Awaitable[None]], tracked: Tracked):
    async def call() -> None:
        await send(tracked)

    return call


def _is_milestone(event: events.Event) -> bool:
    """Events worth a database look-up even for a prompt just found unknown."""
    return isinstance(
        event, events.ExecutionStart | events.ExecutionSuccess | events.ExecutionError
    )


# -- database and jobs (sync; called through database_sync_to_async) ---------------------


def _succeeded(tracked: Tracked) -> None:
    """Sync: what the end of a prompt that succeeded leaves to do. Its run is noted by
    the server's clock (GPU time is billed by it), its slot freed (if `arrived` has
    not had dispatch do it) and its outputs' collection requested (if the broker is
    away, the sweep queues it later); the stored outputs take the live preview's
    place on the page; the run's time teaches its server's speed."""
    note_server_run(tracked.task_id, tracked.run_started_ms, tracked.run_ended_ms)
    sweep.prompt_succeeded(tracked.task_id, tracked.prompt_id, **_progress_fields(tracked.progress))
    previews.discard(tracked.task_id)
    seconds = tracked.run_seconds()
    if seconds is not None:
        speed.observe(tracked.server_id, speed.Work.of(tracked.progress.graph), seconds)


def _load(server_id: int, prompt_id: str) -> Tracked | None:
    task = (
        Task.objects.select_related("server")
        .filter(server_id=server_id, prompt_id=prompt_id, status__in=ACTIVE)
        .only("pk", "team_id", "graph", "status", "started_at", "server__name")
        .first()
    )
    if task is None:
        return None
    return Tracked(
        server_id=server_id,
        prompt_id=prompt_id,
        progress=TaskProgress(task_id=task.pk, team_id=task.team_id, graph=task.graph or {}),
        status=task.status,
        started_at=task.started_at,
        server=task.server.name if task.server else "",
    )


def _save_progress(task_id: int, **fields: Any) -> None:
    # Progress fields only, and only while the task runs: a late write never
    # overwrites what the final state change recorded.
    Task.objects.filter(pk=task_id, status__in=ACTIVE).update(**fields)


def _cancel_requested(task_id: int) -> bool:
    return Task.objects.filter(pk=task_id, cancel_requested=True).exists()
