"""A monitor against in-process simulated ComfyUI servers, with fast fleet settings."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from channels.db import database_sync_to_async

from comfyweb.backoff import Backoff
from servers.comfyui import Event
from servers.models import FleetSettings, Health, Server, ServerState
from servers.monitor.monitor import Monitor
from servers.monitor.watcher import ServerWatcher
from servers.monitor.work import WorkHooks
from servers.simulator import SimulatedComfyUI
from tests.factories import make_server as saved_server
from tests.monitoring import wait_until

# Fast enough that a whole failover story takes a few seconds.
FAST = {
    "health_interval": 0.2,
    "health_timeout": 2.0,
    "queue_timeout": 2.0,
    "failures_before_unhealthy": 2,
    "recheck_backoff_base": 0.2,
    "recheck_backoff_cap": 0.8,
    "capabilities_ttl": 600,
}
TICK = 0.3


class RecordingHandler(WorkHooks):
    def __init__(self) -> None:
        self.events: list[tuple[int, Event]] = []

    async def handle(self, server_id: int, event: Event) -> None:
        self.events.append((server_id, event))


@pytest.fixture
def fast_settings(db) -> FleetSettings:
    fleet = FleetSettings.load()
    for name, value in FAST.items():
        setattr(fleet, name, value)
    fleet.save()
    return fleet


@pytest.fixture
def sim_server(fast_settings) -> Callable[..., Awaitable[Server]]:
    """`await sim_server(sim)`: a Server row for a running simulator, with fast fleet settings."""

    async def make(sim, name: str | None = None, **fields: Any) -> Server:
        return await database_sync_to_async(saved_server)(
            name or f"sim-{sim.port}", base_url=sim.base_url, **fields
        )

    return make


class RunningMonitor:
    def __init__(self, monitor: Monitor, task: asyncio.Task[None], stop: asyncio.Event):
        self.monitor = monitor
        self.task = task
        self.stop = stop
        self.published: list[int] = []
        self.handler: RecordingHandler = monitor.shared.handler  # type: ignore[assignment]

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 30)


@pytest.fixture
async def start_monitor(fast_settings) -> AsyncIterator[Callable[..., Awaitable[RunningMonitor]]]:
    running: list[RunningMonitor] = []

    async def start(**options: Any) -> RunningMonitor:
        published: list[int] = []
        options.setdefault("on_visible_change", published.append)
        options.setdefault("handler", RecordingHandler())
        options.setdefault("stream_backoff", lambda: Backoff(base=0.1, cap=0.5, jitter=0.05))
        monitor = Monitor(tick=TICK, **options)
        stop = asyncio.Event()
        task = asyncio.create_task(monitor.run(stop))
        handle = RunningMonitor(monitor, task, stop)
        handle.published = published
        running.append(handle)
        return handle

    try:
        yield start
    finally:
        for handle in running:
            with contextlib.suppress(Exception):
                await handle.close()


@dataclass
class Watched:
    sim: SimulatedComfyUI
    server: Server
    running: RunningMonitor
    watcher: ServerWatcher

    @property
    def state(self):
        return ServerState.objects.filter(server=self.server)


@pytest.fixture
async def watched(start_comfyui_sims, sim_server, start_monitor) -> Watched:
    """One simulated server, watched by a running monitor: healthy, stream open."""
    (sim,) = await start_comfyui_sims(1)
    server = await sim_server(sim)
    running = await start_monitor()
    await wait_until(
        lambda: ServerState.objects.filter(server=server, health=Health.HEALTHY).exists(),
        what="healthy",
    )
    watcher = running.monitor.watchers[server.pk]
    await wait_until(lambda: watcher.stream_stats.connected, what="event stream open")
    return Watched(sim, server, running, watcher)
