"""The monitor: one watcher per enabled server it leases, kept in step with the database.

Many monitors split the fleet by lease (`leases.py`). Every `tick` seconds one
re-reads the fleet settings and the enabled servers, renews and takes its leases
(starting, restarting and stopping watchers to match what it holds), refetches the
capabilities of servers another process asked about (`refresh.py`: a model
download finished), writes the watchers' routine checks and the event
statistics that changed, tells browsers of the servers whose visible state
changed (in any process: in-flight counts, affinity), and calls the work hooks'
`tick` (its periodic work: re-queueing dropped hand-offs, timers).
The watchers do the health/load checks and the event handling on their own
schedules.

What says "this monitor is alive" runs apart from the tick, every `tick` seconds
on a loop of its own: the heartbeat in Redis, and the lease renewal on a thread
and connection of its own. A tick that runs long (a whole fleet's watchers
starting, a sweep) or database work queued on the monitor's one database thread
(progress, state changes) must not let the leases lapse or the heartbeat
expire: the other monitors would take the servers, the fleet would change hands
for nothing, and the restarts would make the next tick longer still (seen at
500 servers on a saturated machine).

A tick costs a bounded number of queries whatever the fleet's size: the
server list, the settings, one write per distinct routine-check time, one
read of every server's visible state, and one UPDATE per server whose
statistics changed (or were last written `STATS_MAX_AGE` ago).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import connections

from comfyweb.backoff import Backoff

from . import state
from .capabilities import CapabilityCache
from .heartbeat import (
    MonitorIdInUse,
    clear_heartbeat,
    ensure_id_unused,
    new_monitor_id,
    read_heartbeats,
    write_heartbeat,
)
from .leases import Leases
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
# A server's statistics that only aged (uptime, cache hit counts) are written this often,
# give or take a random half, so that a fleet that started together does not write together.
STATS_MAX_AGE = 60.0
# What of the statistics counts as a change worth writing at once: all but these.
_AGING_STATS = ("uptime_s", "updated_at", "capabilities")


class Monitor:
    def __init__(
        self,
        *,
        handler: WorkHooks | None = None,
        on_visible_change: VisibleChangeHook | None = None,
        tick: float = DEFAULT_TICK,
        heartbeat: bool = True,
        stream_backoff: Callable[[], Backoff] = default_stream_backoff,
        lease_seconds: float | None = None,
    ) -> None:
        self.tick = tick
        self._heartbeat = heartbeat
        # Names this monitor in the heartbeats that /healthz and /metrics list, on
        # its leases, and (its tail) in its ComfyUI client ids.
        self.monitor_id = new_monitor_id()
        self.leases = Leases(self.monitor_id, lease_seconds)
        # Renewals only: one thread, so one connection, never queued behind the rest.
        self._lease_thread = ThreadPoolExecutor(1, thread_name_prefix="monitor-leases")
        self.shared = Shared(
            tunables=Tunables.defaults(),
            capabilities=CapabilityCache(),
            handler=handler or new_hooks(),
            publisher=ChangePublisher(on_visible_change),
            stream_backoff=stream_backoff,
        )
        self.watchers: dict[int, ServerWatcher] = {}
        self._refresh_requests = RefreshRequests()
        # Per server: what of its statistics was last written, and when to write it anyway.
        self._stats_written: dict[int, tuple[dict[str, Any], float]] = {}

    @property
    def watched(self) -> dict[int, ServerSpec]:
        return {sid: watcher.spec for sid, watcher in self.watchers.items()}

    async def run(self, stop: asyncio.Event) -> None:
        """Watch the fleet until `stop` is set; then close every stream and task.
        Raises `MonitorIdInUse` first if another live process has this configured id."""
        if self._heartbeat and settings.COMFYWEB_MONITOR_ID:
            try:
                await asyncio.to_thread(ensure_id_unused, self.monitor_id)
            except MonitorIdInUse:
                raise
            except Exception:  # Redis away: the check waits for another start
                logger.warning("could not check that monitor id %s is unused", self.monitor_id)
        logger.info("monitor %s started", self.monitor_id)
        keeping = asyncio.create_task(self._keep_alive(stop), name="monitor keep-alive")
        try:
            while not stop.is_set():
                await self.tick_once()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.tick)
        finally:
            keeping.cancel()
            await asyncio.gather(keeping, return_exceptions=True)
            await self.close()
            logger.info("monitor stopped")

    async def _keep_alive(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.keep_alive()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.tick)

    async def keep_alive(self) -> None:
        """Renew the leases held and the heartbeat, each on its own: Redis being away
        must not let the leases lapse, nor the database the heartbeat."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._lease_thread, self.leases.renew)
        except Exception:
            logger.exception("renewing the leases of monitor %s failed", self.monitor_id)
        try:
            await self.beat()
        except Exception:
            logger.exception("the heartbeat of monitor %s failed", self.monitor_id)

    async def tick_once(self) -> None:
        # Each step on its own: Redis being down must not stop reconciling, etc.
        steps = (
            self.reload_settings,
            self.reconcile,
            self.refresh_models,
            self.flush_stats,
        )
        for step in (*steps, self.handler_tick):
            try:
                await step()
            except Exception:
                logger.exception("monitor step %s failed", step.__name__)

    async def reload_settings(self) -> None:
        self.shared.tunables = await database_sync_to_async(load_tunables)()

    async def reconcile(self) -> None:
        enabled = await database_sync_to_async(enabled_servers)(self.monitor_id)
        held = await database_sync_to_async(self.leases.step)(await self._peers())
        wanted = {sid: spec for sid, spec in enabled.items() if sid in held}
        changes = plan(self.watched, wanted)
        stopping = [self.watchers.pop(sid) for sid in changes.stop]
        await asyncio.gather(*(watcher.stop() for watcher in stopping), return_exceptions=True)
        for watcher in stopping:
            self._stats_written.pop(watcher.server_id, None)
            if watcher.server_id not in wanted:
                self.shared.capabilities.forget(watcher.server_id)
                self.shared.publisher.forget(watcher.server_id)
        for spec in changes.rename:
            self.watchers[spec.id].spec = spec
        # Many at once (the monitor starts, a fleet is added) are first checked over one
        # health interval, not all in the same instant; one alone is checked at once.
        spread = self.shared.tunables.health_interval / len(changes.start) if changes.start else 0
        for index, spec in enumerate(changes.start):
            watcher = ServerWatcher(spec, self.shared)
            try:
                await watcher.start(first_check_in=index * spread)
            except Exception:
                logger.exception("could not start watching server %s", spec.name)
                await watcher.stop()
                continue
            self.watchers[spec.id] = watcher

    async def _peers(self) -> dict[str, int | None] | None:
        """The monitors alive and the leases each holds, from their heartbeats; None
        if unknown (Redis away, or this monitor beats not: it is then not known to
        the others either)."""
        if not self._heartbeat:
            return None
        try:
            beats = await asyncio.to_thread(read_heartbeats)
        except Exception:
            return None
        return {str(beat["id"]): beat.get("leases") for beat in beats if "id" in beat}

    async def refresh_models(self) -> None:
        # Asked from elsewhere (a model download finished): refetch capabilities now.
        for server_id in await self._refresh_requests.due(self.watchers):
            watcher = self.watchers.get(server_id)
            if watcher is not None:
                self.shared.capabilities.invalidate(server_id)
                watcher.check_now()

    async def flush_stats(self) -> None:
        """Routine checks and changed statistics, written; visible changes, published."""
        routine = self.shared.routine.take()
        if routine:
            for sid in await database_sync_to_async(state.write_routine_checks)(routine):
                if (watcher := self.watchers.get(sid)) is not None:
                    watcher.write_in_full()
        changed = self._changed_stats()
        if changed:
            await database_sync_to_async(state.write_event_stats_many)(changed)
        await self.shared.publisher.refresh_many(
            list(self.watchers), affinity_window=self.shared.tunables.affinity_window
        )

    def _changed_stats(self) -> dict[int, dict[str, Any]]:
        now = time.monotonic()
        changed = {}
        for sid, watcher in self.watchers.items():
            stats = event_stats(watcher.stream_stats, self.shared.capabilities.counts(sid))
            material = {k: v for k, v in stats.items() if k not in _AGING_STATS}
            written = self._stats_written.get(sid)
            if written is None or written[0] != material or now >= written[1]:
                changed[sid] = stats
                due = now + STATS_MAX_AGE * random.uniform(0.5, 1.0)  # noqa: S311 - spreading
                self._stats_written[sid] = (material, due)
        return changed

    async def handler_tick(self) -> None:
        # The work's own periodic work (see `work.WorkHooks`).
        await self.shared.handler.tick()

    async def beat(self) -> None:
        if self._heartbeat:
            await write_heartbeat(
                self.monitor_id, len(self.watchers), self.tick, leases=len(self.leases.held)
            )

    async def close(self) -> None:
        watchers, self.watchers = list(self.watchers.values()), {}
        await asyncio.gather(*(watcher.stop() for watcher in watchers), return_exceptions=True)
        # After any renewal under way (the thread runs one thing at a time), which
        # would otherwise hold the leases again for a lease period.
        loop = asyncio.get_running_loop()
        with contextlib.suppress(Exception):
            await loop.run_in_executor(self._lease_thread, connections.close_all)
        self._lease_thread.shutdown(wait=False)
        # Given back at once: the other monitors take the servers at their next tick.
        with contextlib.suppress(Exception):
            await database_sync_to_async(self.leases.release)()
        with contextlib.suppress(Exception):
            await self.shared.publisher.close()
        if self._heartbeat:
            with contextlib.suppress(Exception):
                await clear_heartbeat(self.monitor_id)
