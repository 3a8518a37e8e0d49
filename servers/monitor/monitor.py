"""The monitor: one watcher per enabled server, kept in step with the database.

Every `tick` seconds it re-reads the fleet settings and the enabled servers
(starting, restarting and stopping watchers to match), refetches the
capabilities of servers another process asked about (`refresh.py`: a model
download finished), writes each server's event statistics, renews its
heartbeat in Redis, and calls the work hooks' `tick` (its periodic work:
re-queueing dropped hand-offs, timers).
The watchers do the health/load checks and the event handling on their own
schedules.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from channels.db import database_sync_to_async

from comfyweb.backoff import Backoff

from . import state
from .capabilities import CapabilityCache
from .heartbeat import clear_heartbeat, write_heartbeat
from .refresh import RefreshRequests
from .registry import ServerSpec, enabled_servers, plan
from .stats import event_stats
from .tunables import Tunables, load_tunables
from .visible_changes import ChangePublisher, VisibleChangeHook
from .watcher import ServerWatcher, Shared, default_stream_backoff
from .work import WorkHooks, new_hooks

logger = logging.getLogger(__name__)

# Admin edits show up within this many seconds (issue 4: "within a few seconds").
DEFAULT_TICK = 2.0


class Monitor:
    def __init__(
        self,
        *,
        handler: WorkHooks | None = None,
        on_visible_change: VisibleChangeHook | None = None,
        tick: float = DEFAULT_TICK,
        heartbeat: bool = True,
        stream_backoff: Callable[[], Backoff] = default_stream_backoff,
    ) -> None:
        self.tick = tick
        self._heartbeat = heartbeat
        self.shared = Shared(
            tunables=Tunables.defaults(),
            capabilities=CapabilityCache(),
            handler=handler or new_hooks(),
            publisher=ChangePublisher(on_visible_change),
            stream_backoff=stream_backoff,
        )
        self.watchers: dict[int, ServerWatcher] = {}
        self._refresh_requests = RefreshRequests()

    @property
    def watched(self) -> dict[int, ServerSpec]:
        return {sid: watcher.spec for sid, watcher in self.watchers.items()}

    async def run(self, stop: asyncio.Event) -> None:
        """Watch the fleet until `stop` is set; then close every stream and task."""
        logger.info("monitor started")
        try:
            while not stop.is_set():
                await self.tick_once()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.tick)
        finally:
            await self.close()
            logger.info("monitor stopped")

    async def tick_once(self) -> None:
        # Each step on its own: Redis being down must not stop reconciling, etc.
        steps = (
            self.reload_settings,
            self.reconcile,
            self.refresh_models,
            self.flush_stats,
            self.beat,
        )
        for step in (*steps, self.handler_tick):
            try:
                await step()
            except Exception:
                logger.exception("monitor step %s failed", step.__name__)

    async def reload_settings(self) -> None:
        self.shared.tunables = await database_sync_to_async(load_tunables)()

    async def reconcile(self) -> None:
        wanted = await database_sync_to_async(enabled_servers)()
        changes = plan(self.watched, wanted)
        stopping = [self.watchers.pop(sid) for sid in changes.stop]
        await asyncio.gather(*(watcher.stop() for watcher in stopping), return_exceptions=True)
        for watcher in stopping:
            if watcher.server_id not in wanted:
                self.shared.capabilities.forget(watcher.server_id)
                self.shared.publisher.forget(watcher.server_id)
        for spec in changes.rename:
            self.watchers[spec.id].spec = spec
        for spec in changes.start:
            watcher = ServerWatcher(spec, self.shared)
            try:
                await watcher.start()
            except Exception:
                logger.exception("could not start watching server %s", spec.name)
                await watcher.stop()
                continue
            self.watchers[spec.id] = watcher

    async def refresh_models(self) -> None:
        # Asked from elsewhere (a model download finished): refetch capabilities now.
        for server_id in await self._refresh_requests.due(self.watchers):
            watcher = self.watchers.get(server_id)
            if watcher is not None:
                self.shared.capabilities.invalidate(server_id)
                watcher.check_now()

    async def flush_stats(self) -> None:
        for watcher in list(self.watchers.values()):
            sid = watcher.server_id
            stats = event_stats(watcher.stream_stats, self.shared.capabilities.counts(sid))
            await database_sync_to_async(state.write_event_stats)(sid, stats)
            await self.shared.publisher.refresh(
                sid, affinity_window=self.shared.tunables.affinity_window
            )

    async def handler_tick(self) -> None:
        # The work's own periodic work (see `work.WorkHooks`).
        await self.shared.handler.tick()

    async def beat(self) -> None:
        if self._heartbeat:
            await write_heartbeat(len(self.watchers), self.tick)

    async def close(self) -> None:
        watchers, self.watchers = list(self.watchers.values()), {}
        await asyncio.gather(*(watcher.stop() for watcher in watchers), return_exceptions=True)
        if self._heartbeat:
            with contextlib.suppress(Exception):
                await clear_heartbeat()
