"""A task's execution as the monitor sees it, in the test's own event loop: a
simulated ComfyUI, the real monitor with the tasks' handler, events fed by hand,
and `wait_until` to poll for what they lead to."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from channels.db import database_sync_to_async

from servers.models import Server
from servers.monitor.monitor import Monitor
from servers.simulator import SimulatedComfyUI
from tasks.execution import TaskEventHandler
from tasks.models import Task
from tests.simulator_thread import TIME_SCALE


async def wait_until(
    condition: Callable[[], Awaitable[Any]] | Callable[[], Any],
    *,
    within: float = 20.0,
    what: str = "condition",
) -> Any:
    """Poll `condition` (sync ORM functions run in a thread) until it is truthy."""
    sync = not asyncio.iscoroutinefunction(condition)
    check = database_sync_to_async(condition) if sync else condition
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def simulator(data_dir: pathlib.Path) -> AsyncIterator[SimulatedComfyUI]:
    """A started simulated ComfyUI on 127.0.0.1; stopped afterwards."""
    sim = SimulatedComfyUI("127.0.0.1", 0, data_dir=data_dir, time_scale=TIME_SCALE)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


@contextlib.asynccontextmanager
async def watching(server: Server) -> AsyncIterator[Monitor]:
    """The real monitor, with the tasks' handler, following `server` until the block ends."""
    monitor = Monitor(
        handler=TaskEventHandler(), tick=0.3, heartbeat=False, on_visible_change=lambda _: None
    )
    stop = asyncio.Event()
    running = asyncio.create_task(monitor.run(stop))
    try:
        await wait_until(
            lambda: (
                server.pk in monitor.watchers and monitor.watchers[server.pk].stream_stats.connected
            ),
            what="the monitor's event stream",
        )
        yield monitor
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)


async def sample_up_to(handler, task: Task, step: int, steps: int) -> None:
    """Feed `handler` the events of `task` (a 3-node graph such as slow_progress) up to
    `step` of `steps` in node 2, node 1 done: what the monitor hears mid-run."""
    from servers.comfyui import Executing, ExecutionStart, Progress

    prompt = task.prompt_id
    await handler.handle(task.server_id, ExecutionStart(prompt_id=prompt))
    await handler.handle(task.server_id, Executing(prompt_id=prompt, node="1"))
    await handler.handle(task.server_id, Executing(prompt_id=prompt, node="2"))
    for value in range(1, step + 1):
        event = Progress(prompt_id=prompt, node="2", value=value, max=steps)
        await handler.handle(task.server_id, event)
