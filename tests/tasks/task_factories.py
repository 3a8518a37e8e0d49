"""Builders for the execution, outputs and task-page tests: a simulator, tasks on it."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import pathlib
from collections.abc import AsyncIterator
from typing import Any

from django.utils import timezone

from servers.models import Server, ServerState
from servers.monitor.monitor import Monitor
from servers.simulator import SimulatedComfyUI
from tasks.execution import TaskEventHandler
from tasks.models import Status, Task, TaskEvent
from teams.models import Team
from tests.factories import make_team
from tests.servers.monitor.conftest import wait_until

WORKFLOWS = pathlib.Path("/work/shared/comfyui/workflows")
# Simulated work runs ten times faster than the recorded timings.
TIME_SCALE = 0.1
_names = itertools.count(1)


def workflow(name: str) -> dict[str, Any]:
    return json.loads((WORKFLOWS / f"{name}.json").read_text())


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


@contextlib.asynccontextmanager
async def simulator(data_dir: pathlib.Path) -> AsyncIterator[SimulatedComfyUI]:
    """A started simulated ComfyUI on 127.0.0.1; stopped afterwards."""
    sim = SimulatedComfyUI("127.0.0.1", 0, data_dir=data_dir, time_scale=TIME_SCALE)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


def make_server(base_url: str = "http://127.0.0.1:9", **fields: Any) -> Server:
    return Server.objects.create(
        name=fields.pop("name", None) or f"sim-{next(_names)}", base_url=base_url, **fields
    )


def make_task(
    team: Team | None = None,
    *,
    server: Server | None = None,
    status: str = Status.DISPATCHED,
    graph: dict[str, Any] | None = None,
    **fields: Any,
) -> Task:
    """A task as dispatch leaves it: on `server` with a fresh prompt id, slot taken."""
    team = team or make_team()
    active = status in Status.active()
    task = Task.objects.create(
        team=team,
        graph=graph or workflow("empty_save"),
        status=status,
        server=server,
        prompt_id=Task.new_prompt_id() if server else "",
        dispatched_at=timezone.now() if active else None,
        attempts=1 if server else 0,
        **fields,
    )
    TaskEvent.objects.create(task=task, to_status=status, message="made by the test")
    if server is not None and active:
        ServerState.objects.filter(server=server).update(inflight=1)
    return task


class FrozenClock:
    """Time that stands still, for the handler's coalescers."""

    def __call__(self) -> float:
        return 1000.0


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
