"""One server, watched: its event stream and its health/load check loop.

A `ServerWatcher` owns the server's `EventStream` (client id: its monitor's own for
the server, `servers.models.leased_client_id`)
and an HTTP client. Its check loop polls `/system_stats` every `health_interval`
while the server is healthy and on a backoff while it is unhealthy (B5), and at
once when its event stream drops or comes back; a check that finds the server
answering while its stream is down has the stream try again at once rather than
wait out its backoff. Its event loop feeds execution events to the handler and
notes dropped and restored streams.

What a fleet of hundreds costs at rest is kept flat (issue 15, goal 7):

- `/queue` is read with `/system_stats` unless the queue read last is known to
  be current: the event stream has been up since and brought no `status`
  message (ComfyUI broadcasts one on every change of its queue), and fewer than
  `QUEUE_REREAD_CHECKS` checks have passed (a broken `/queue` still shows);
- a healthy check that found what the last write said (health; version,
  device and load; free VRAM to the tenth of a GB the pages show; no failure to
  close) is a *routine* check: its times are written with every
  other server's once a tick (`Shared.routine`), and nothing is published;
  anything else is written, and looked at for browsers, at once. A routine
  write that finds the server no longer healthy (another process marked it: a
  container or local instance gone) makes the next check a full one, and a
  full write happens at least every `FULL_WRITE_SECONDS` anyway;
- a routine check of a server whose event stream is up is followed by the next
  after `QUIET_CHECKS_EVERY` health intervals, but within half the load cache's
  age (B4; 7.5 s with the defaults), so that the balancer never finds every load
  report stale (a one-server fleet whose task waited for the next check showed
  it): the stream already says at once when the server goes (it drops: a check
  runs now) or its queue changes (`status`), and a server that hangs with its
  socket open fails the stream's pings. Anything else (a change found, the
  stream down, a failed check) goes back to one interval. At 500 idle servers
  the checks' HTTP requests were ~80 % of the monitor's CPU;
- node catalogues are fetched beside the check loop, at most
  `CATALOGUE_FETCHES` at a time for the whole monitor, so a fleet that starts
  (or restarts) together does not fetch them all at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from channels.db import database_sync_to_async
from django.utils import timezone

from comfyweb.backoff import Backoff
from servers.clients import client_for
from servers.comfyui import (
    ComfyUIError,
    Connected,
    Disconnected,
    Event,
    EventStream,
    QueueState,
    Reconnected,
    Status,
    StreamStats,
    SystemStats,
)
from servers.models import Health

from . import state
from .capabilities import CapabilityCache, fetch_capabilities
from .checks import CheckOutcome, check_server
from .registry import ServerSpec
from .tunables import Tunables
from .visible_changes import ChangePublisher, gigabytes
from .work import WorkHooks, is_execution_event

logger = logging.getLogger(__name__)

# /queue is read at least every this many checks (once a minute at the default interval),
# even when the event stream says it is unchanged.
QUEUE_REREAD_CHECKS = 12
# A routine check with the event stream up: the next one after this many health intervals.
QUIET_CHECKS_EVERY = 3
# A healthy server's state is written in full at least this often (routine checks between).
FULL_WRITE_SECONDS = 300.0
# Node catalogues fetched at once, over the whole monitor.
CATALOGUE_FETCHES = 4


def default_stream_backoff() -> Backoff:
    return Backoff(base=0.5, cap=30.0)


class RoutineChecks:
    """Routine checks waiting for the monitor's next tick to be written together."""

    def __init__(self) -> None:
        self._pending: dict[int, state.RoutineCheck] = {}

    def add(self, server_id: int, check: state.RoutineCheck) -> None:
        self._pending[server_id] = check

    def discard(self, server_id: int) -> None:
        """A full write of this server supersedes its routine one."""
        self._pending.pop(server_id, None)

    def take(self) -> dict[int, state.RoutineCheck]:
        pending, self._pending = self._pending, {}
        return pending


@dataclass
class Shared:
    """What every watcher of one monitor shares; the monitor refreshes `tunables`."""

    tunables: Tunables
    capabilities: CapabilityCache
    handler: WorkHooks
    publisher: ChangePublisher
    stream_backoff: Callable[[], Backoff] = field(default=default_stream_backoff)
    routine: RoutineChecks = field(default_factory=RoutineChecks)
    catalogue_fetches: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(CATALOGUE_FETCHES)
    )


class ServerWatcher:
    def __init__(self, spec: ServerSpec, shared: Shared) -> None:
        self.spec = spec
        self._shared = shared
        # Each check is itself the retry: the "check" client has no retries on top.
        self._client = client_for(spec, "check")
        self._stream = EventStream(
            spec.base_url,
            spec.client_id,
            headers=spec.header_dict(),
            backoff=shared.stream_backoff(),
        )
        self._recheck: Backoff | None = None
        self._recheck_params: tuple[float, float] | None = None
        # ComfyUI's own count (running + pending) from the last `status` event:
        # the load figure when /queue fails (B1).
        self.queue_remaining: int | None = None
        # The /queue answer read last, and whether the stream has since said it changed
        # (or was not there to say): see the module docstring.
        self._queue: QueueState | None = None
        self._queue_changed = True
        self._stream_up = False
        # Started anywhere in the cycle: a fleet met at once does not re-read together.
        self._checks_since_queue = random.randrange(QUEUE_REREAD_CHECKS)  # noqa: S311
        # What the last full write said of a healthy server (None: write in full next
        # time), when, and whether failure records it would close may be open.
        self._written: dict[str, Any] | None = None
        self._written_at = 0.0
        self._records_may_be_open = True
        self.first_check_in = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self._catalogue_fetch: asyncio.Task[None] | None = None
        # Set by the event loop to run the next check now instead of after the delay.
        self._wake = asyncio.Event()

    @property
    def server_id(self) -> int:
        return self.spec.id

    @property
    def stream_stats(self) -> StreamStats:
        return self._stream.stats

    def _log_extra(self, **fields: object) -> dict[str, object]:
        return {"server_id": self.spec.id, "server": self.spec.name, **fields}

    async def start(self, *, first_check_in: float = 0.0) -> None:
        """Connect and start checking, the first check after `first_check_in` seconds
        (the monitor spreads a fleet's first checks over a health interval)."""
        self.first_check_in = first_check_in
        # Before start(): the first Connected included.
        events = self._stream.listen(
            on_arrival=functools.partial(self._shared.handler.arrived, self.spec.id)
        )
        await self._stream.start()
        name = f"monitor {self.spec.name}"
        self._tasks = [
            asyncio.create_task(self._event_loop(events), name=f"{name} events"),
            asyncio.create_task(self._check_loop(first_check_in), name=f"{name} checks"),
        ]
        logger.info("watching server %s", self.spec.name, extra=self._log_extra())

    async def stop(self) -> None:
        tasks = [*self._tasks, *filter(None, [self._catalogue_fetch])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks, self._catalogue_fetch = [], None
        self._shared.routine.discard(self.spec.id)
        await self._stream.close()
        await self._client.aclose()
        logger.info("stopped watching server %s", self.spec.name, extra=self._log_extra())

    # -- checks ---------------------------------------------------------------------

    def _backoff(self, tunables: Tunables) -> Backoff:
        params = (tunables.recheck_backoff_base, tunables.recheck_backoff_cap)
        if self._recheck is None or params != self._recheck_params:
            base, cap = params
            # Jitter in proportion to the base, so that servers that failed
            # together are not all re-checked in the same instant.
            self._recheck = Backoff(base=base, cap=cap, jitter=base / 4)
            self._recheck_params = params
        return self._recheck

    async def _check_loop(self, first_check_in: float = 0.0) -> None:
        if first_check_in > 0:
            await self._sleep(first_check_in)
        while True:
            tunables = self._shared.tunables
            try:
                delay = await self.check_once(tunables)
            except asyncio.CancelledError:
                raise
            except Exception:
                # A database hiccup must not end the watch; try again later.
                logger.exception("check of server %s failed", self.spec.name)
                delay = tunables.health_interval
            await self._sleep(delay)

    async def _sleep(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), delay)
        self._wake.clear()

    def check_now(self) -> None:
        """Run the next check at once (the event stream saw the server go or come back)."""
        self._wake.set()

    async def check_once(self, tunables: Tunables) -> float:
        """One health + load check, written to the database; returns the next delay."""
        known_queue = self._known_queue()
        outcome = await check_server(
            self._client,
            health_timeout=tunables.health_timeout,
            queue_timeout=tunables.queue_timeout,
            known_queue=known_queue,
        )
        if outcome.healthy and not self._stream_up:
            # It answers again: its events (and the reconcile their return brings)
            # need not wait out the stream's reconnect backoff.
            self._stream.retry_now()
        if known_queue is None:
            self._queue = outcome.queue
            if outcome.queue is None:  # unanswered: read it again next time
                self._queue_changed = True
        if outcome.healthy and self._routine(outcome):
            self._backoff(tunables).reset()
            delay = self._routine_delay(tunables)
            self._shared.routine.add(
                self.spec.id, state.RoutineCheck.of(timezone.now(), delay, outcome.response_ms)
            )
            assert outcome.stats is not None
            self._refresh_capabilities(outcome.stats, tunables)
            return delay
        self._shared.routine.discard(self.spec.id)
        if outcome.healthy:
            delay = await self._healthy(outcome, tunables)
        else:
            delay = await self._failed(outcome, tunables)
        self._shared.publisher.soon(self.spec.id, affinity_window=tunables.affinity_window)
        return delay

    def _routine_delay(self, tunables: Tunables) -> float:
        if not self._stream_up:
            return tunables.health_interval
        quiet = min(QUIET_CHECKS_EVERY * tunables.health_interval, tunables.load_cache_age / 2)
        return max(tunables.health_interval, quiet)

    def _known_queue(self) -> QueueState | None:
        """The queue read last if it is still current, else None (and read it now)."""
        if (
            self._queue is not None
            and self._stream_up
            and not self._queue_changed
            and self._checks_since_queue < QUEUE_REREAD_CHECKS
        ):
            self._checks_since_queue += 1
            return self._queue
        # Cleared before asking: a change announced while /queue answers is read next time.
        self._queue_changed = False
        self._checks_since_queue = 0
        return None

    def write_in_full(self) -> None:
        """Another process changed what the last write said: the next check writes all."""
        self._written = None

    def _figures(self, outcome: CheckOutcome) -> dict[str, Any]:
        """What a check found, as compared with the last full write: free VRAM as pages
        show it (a real GPU's moves by a few MB on every check)."""
        figures = state.system_fields(outcome) | state.load_fields(
            outcome, self.queue_remaining, self.spec.client_id
        )
        if "vram_free" in figures:
            figures["vram_free"] = gigabytes(figures["vram_free"])
        return figures

    def _routine(self, outcome: CheckOutcome) -> bool:
        """Whether this healthy check found just what the last full write said."""
        return (
            outcome.queue is not None
            and not self._records_may_be_open
            and time.monotonic() - self._written_at < FULL_WRITE_SECONDS
            and self._written == self._figures(outcome)
        )

    async def _healthy(self, outcome: CheckOutcome, tunables: Tunables) -> float:
        self._backoff(tunables).reset()
        delay = tunables.health_interval
        transition = await database_sync_to_async(state.record_success)(
            self.spec.id,
            outcome,
            next_check_at=timezone.now() + timedelta(seconds=delay),
            queue_remaining=self.queue_remaining,
            own_client_id=self.spec.base_client_id or self.spec.client_id,
        )
        if transition.after == Health.HEALTHY:
            # Written in full: open health (and, with /queue answered, queue) failures
            # are closed now; a failed /queue has just been recorded as one.
            self._written = self._figures(outcome) if outcome.queue is not None else None
            self._written_at = time.monotonic()
            self._records_may_be_open = outcome.queue is None
        extra = self._log_extra(health=Health.HEALTHY, response_ms=outcome.response_ms)
        if transition.readmitted:
            # It was down: probably restarted, with possibly other nodes and models.
            self._shared.capabilities.invalidate(self.spec.id)
            logger.warning("server %s re-admitted", self.spec.name, extra=extra)
            # Its slots are free again: pending tasks may go there now.
            await database_sync_to_async(self._shared.handler.server_can_take_work)(self.spec.id)
        elif transition.before != Health.HEALTHY:
            logger.info("server %s healthy", self.spec.name, extra=extra)
        if outcome.queue is None:
            logger.info(
                "server %s: /queue failed, load from system_stats",
                self.spec.name,
                extra=self._log_extra(queue_error=outcome.queue_error),
            )
        assert outcome.stats is not None
        self._refresh_capabilities(outcome.stats, tunables)
        return delay

    async def _failed(self, outcome: CheckOutcome, tunables: Tunables) -> float:
        self._written, self._records_may_be_open = None, True
        reason = outcome.health_error or "no answer"
        transition = await database_sync_to_async(state.record_failure)(
            self.spec.id, reason, tunables
        )
        if transition.after == Health.UNHEALTHY:
            delay = self._backoff(tunables).failed()
        else:
            delay = tunables.health_interval
        await database_sync_to_async(state.set_next_check)(
            self.spec.id, timezone.now() + timedelta(seconds=delay)
        )
        extra = self._log_extra(
            health=transition.after,
            reason=reason,
            consecutive_failures=transition.consecutive_failures,
            next_check_in=round(delay, 2),
        )
        if transition.marked_unhealthy:
            # Our prompts on it are lost unless it comes back: retry them elsewhere.
            await database_sync_to_async(self._shared.handler.server_needs_reconcile)(self.spec.id)
            logger.warning(
                "server %s marked unhealthy after %d failed checks: %s (failover)",
                self.spec.name,
                transition.consecutive_failures,
                reason,
                extra=extra,
            )
        else:
            logger.info("server %s check failed: %s", self.spec.name, reason, extra=extra)
        return delay

    def _refresh_capabilities(self, stats: SystemStats, tunables: Tunables) -> None:
        """Fetch the node catalogue beside the check loop when the cache misses."""
        if self._catalogue_fetch is not None and not self._catalogue_fetch.done():
            return  # one at a time; it counts as the lookup that started it
        cache = self._shared.capabilities
        if cache.lookup(self.spec.id, tunables.capabilities_ttl, stats):
            return
        self._catalogue_fetch = asyncio.create_task(
            self._fetch_capabilities(tunables), name=f"monitor {self.spec.name} catalogue"
        )

    async def _fetch_capabilities(self, tunables: Tunables) -> None:
        cache = self._shared.capabilities
        try:
            async with self._shared.catalogue_fetches:
                # The timeout starts once it is this server's turn.
                async with asyncio.timeout(max(tunables.health_timeout, 10.0)):
                    found = await fetch_capabilities(self._client)
        except (ComfyUIError, TimeoutError) as error:
            logger.warning(
                "capabilities of server %s unavailable: %s",
                self.spec.name,
                str(error) or type(error).__name__,
                extra=self._log_extra(),
            )
            return
        try:
            await database_sync_to_async(state.write_capabilities)(
                self.spec.id,
                found.node_classes,
                found.model_files,
                timezone.now(),
                found.object_info,
            )
            cache.stored(self.spec.id)
            # The balancer holds back tasks for servers whose nodes and models it does not
            # know yet (a newly added or restarted server): now it does, so look again.
            await database_sync_to_async(self._shared.handler.server_can_take_work)(self.spec.id)
        except Exception:
            # A database hiccup: the next check misses the cache and tries again.
            logger.exception("storing the capabilities of server %s failed", self.spec.name)

    # -- events ---------------------------------------------------------------------

    async def _look_after_others(self) -> None:
        """The events of a prompt go to the client id that sent it, so none of a prompt
        another monitor sent reach this one (sent while another leased the server, or
        before this one restarted). But ComfyUI tells every socket when its queue
        changes (`status`): when it shrinks and such prompts are on the server, what
        became of them is reconciled from /history and /queue. One query per prompt
        that ends, whatever the lease did meanwhile."""
        hooks = self._shared.handler
        if await database_sync_to_async(hooks.others_prompts_on)(self.spec.id, self.spec.client_id):
            await database_sync_to_async(hooks.server_needs_reconcile)(self.spec.id)

    async def _event_loop(self, events) -> None:
        async with events:
            async for event in events:
                try:
                    await self._on_event(event)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.exception("event %s of server %s failed", event.type, self.spec.name)

    async def _on_event(self, event: Event) -> None:
        if isinstance(event, Status | Disconnected | Connected | Reconnected):
            self._queue_changed = True  # the queue /queue told changed, or may have unseen
        if isinstance(event, Status):
            # A prompt ended (the queue shrank), or the first word since connecting.
            ended = self.queue_remaining is None or event.queue_remaining < self.queue_remaining
            self.queue_remaining = event.queue_remaining
            if ended:
                await self._look_after_others()
        elif isinstance(event, Disconnected):
            self._stream_up = False
            # A lost socket is the earliest sign of a dead server: check now
            # rather than up to a whole interval later (faster failover).
            self.check_now()
            await database_sync_to_async(state.record_stream_drop)(
                self.spec.id, f"event stream lost: {event.reason}"
            )
            self._shared.publisher.soon(
                self.spec.id, affinity_window=self._shared.tunables.affinity_window
            )
        elif isinstance(event, Connected | Reconnected):
            self._stream_up = True
            if isinstance(event, Reconnected):
                # ComfyUI may have restarted behind the gap: its nodes and models too.
                self._shared.capabilities.invalidate(self.spec.id)
                # It answers again: re-admit it without waiting out the backoff.
                self.check_now()
            else:
                # First connection since the monitor started: events of our prompts
                # may have been missed while it was down (the handler covers gaps
                # in a running monitor, on Reconnected).
                await database_sync_to_async(self._shared.handler.server_needs_reconcile)(
                    self.spec.id
                )
            await database_sync_to_async(state.record_stream_back)(self.spec.id)
        if is_execution_event(event):
            await self._shared.handler.handle(self.spec.id, event)
