"""One server, watched: its event stream and its health/load check loop.

A `ServerWatcher` owns the server's `EventStream` (client id = `Server.client_id`)
and an HTTP client. Its check loop polls `/system_stats` and `/queue` every
`health_interval` while the server is healthy and on a backoff while it is
unhealthy (B5), and at once when its event stream drops or comes back; its
event loop feeds execution events to the handler and notes dropped and restored
streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

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
from .visible_changes import ChangePublisher
from .work import WorkHooks, is_execution_event

logger = logging.getLogger(__name__)


def default_stream_backoff() -> Backoff:
    return Backoff(base=0.5, cap=30.0)


@dataclass
class Shared:
    """What every watcher of one monitor shares; the monitor refreshes `tunables`."""

    tunables: Tunables
    capabilities: CapabilityCache
    handler: WorkHooks
    publisher: ChangePublisher
    stream_backoff: Callable[[], Backoff] = field(default=default_stream_backoff)


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
        self._tasks: list[asyncio.Task[None]] = []
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

    async def start(self) -> None:
        events = self._stream.listen()  # before start(): the first Connected included
        await self._stream.start()
        name = f"monitor {self.spec.name}"
        self._tasks = [
            asyncio.create_task(self._event_loop(events), name=f"{name} events"),
            asyncio.create_task(self._check_loop(), name=f"{name} checks"),
        ]
        logger.info("watching server %s", self.spec.name, extra=self._log_extra())

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
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

    async def _check_loop(self) -> None:
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
        outcome = await check_server(
            self._client,
            health_timeout=tunables.health_timeout,
            queue_timeout=tunables.queue_timeout,
        )
        if outcome.healthy:
            delay = await self._healthy(outcome, tunables)
        else:
            delay = await self._failed(outcome, tunables)
        await self._shared.publisher.refresh(self.spec.id, affinity_window=tunables.affinity_window)
        return delay

    async def _healthy(self, outcome: CheckOutcome, tunables: Tunables) -> float:
        self._backoff(tunables).reset()
        delay = tunables.health_interval
        transition = await database_sync_to_async(state.record_success)(
            self.spec.id,
            outcome,
            next_check_at=timezone.now() + timedelta(seconds=delay),
            queue_remaining=self.queue_remaining,
            own_client_id=self.spec.client_id,
        )
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
        await self._refresh_capabilities(outcome.stats, tunables)
        return delay

    async def _failed(self, outcome: CheckOutcome, tunables: Tunables) -> float:
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

    async def _refresh_capabilities(self, stats: SystemStats, tunables: Tunables) -> None:
        cache = self._shared.capabilities
        if cache.lookup(self.spec.id, tunables.capabilities_ttl, stats):
            return
        try:
            async with asyncio.timeout(max(tunables.health_timeout, 10.0)):
                found = await fetch_capabilities(self._client)
        except (ComfyUIError, TimeoutError) as error:
            logger.warning(
                "capabilities of server %s unavailable: %s",
                self.spec.name,
                error,
                extra=self._log_extra(),
            )
            return
        await database_sync_to_async(state.write_capabilities)(
            self.spec.id, found.node_classes, found.model_files, timezone.now(), found.object_info
        )
        cache.stored(self.spec.id)
        # The balancer holds back tasks for servers whose nodes and models it does not
        # know yet (a newly added or restarted server): now it does, so look again.
        await database_sync_to_async(self._shared.handler.server_can_take_work)(self.spec.id)

    # -- events ---------------------------------------------------------------------

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
        if isinstance(event, Status):
            self.queue_remaining = event.queue_remaining
        elif isinstance(event, Disconnected):
            # A lost socket is the earliest sign of a dead server: check now
            # rather than up to a whole interval later (faster failover).
            self.check_now()
            await database_sync_to_async(state.record_stream_drop)(
                self.spec.id, f"event stream lost: {event.reason}"
            )
            await self._shared.publisher.refresh(
                self.spec.id, affinity_window=self._shared.tunables.affinity_window
            )
        elif isinstance(event, Connected | Reconnected):
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
