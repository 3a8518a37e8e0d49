"""Builders for queue, dispatch and cancel tests: graphs, tasks, servers with state."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from django.utils import timezone
from django_q.conf import Conf

from servers.comfyui import ComfyUIClient
from servers.models import Server, ServerState
from servers.requirements import workflow_key_of
from servers.simulator import SimulatedComfyUI, SimulatorConfig
from tasks import dispatch, enqueue, sweep
from tasks.models import Priority, Status, Task, TaskEvent
from teams.models import Team
from tests.factories import make_team, make_user
from tests.simulator_thread import LoopThread

# Simulated work runs ten times faster than the recorded timings.
TIME_SCALE = 0.1

_seeds = itertools.count(1)
CHECKPOINT = "v1-5-pruned-emaonly.safetensors"
CATALOGUE = [
    "CheckpointLoaderSimple",
    "CLIPTextEncode",
    "EmptyLatentImage",
    "KSampler",
    "LoadImage",
    "VAEDecode",
    "SaveImage",
]


def trivial_graph(seed: int | None = None) -> dict[str, Any]:
    """The smallest graph a simulator runs: an empty latent decoded and saved."""
    return {
        "1": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"},
        },
        "2": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1},
        },
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["1", 0],
                "seed": seed if seed is not None else next(_seeds),
                "steps": 1,
                "cfg": 1.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "positive": ["4", 0],
                "negative": ["4", 0],
                "latent_image": ["2", 0],
                "denoise": 1.0,
            },
        },
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["1", 1]}},
        "5": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["1", 2]}},
        "6": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "t"}},
    }


def make_task(
    team: Team | None = None,
    *,
    priority: int = Priority.NORMAL,
    status: str = Status.PENDING,
    created_at: datetime | None = None,
    **fields: Any,
) -> Task:
    team = team or make_team()
    graph = fields.pop("graph", None) or trivial_graph()
    task = Task.objects.create(
        team=team,
        graph=graph,
        workflow_key=fields.pop("workflow_key", None) or workflow_key_of(graph),
        priority=priority,
        status=status,
        created_at=created_at or timezone.now(),
        **fields,
    )
    TaskEvent.objects.create(task=task, to_status=status, message="submitted")
    return task


def aged(minutes: float) -> datetime:
    return timezone.now() - timedelta(minutes=minutes)


def make_live_server(
    base_url: str, *, name: str | None = None, max_inflight: int = 2, **state: Any
) -> Server:
    """A registered, healthy server whose catalogue the monitor has just read."""
    now = timezone.now()
    server = Server.objects.create(
        name=name or base_url.rsplit(":", 1)[-1], base_url=base_url, max_inflight=max_inflight
    )
    ServerState.objects.filter(server=server).update(
        **(
            {
                "health": "healthy",
                "last_checked_at": now,
                "load_checked_at": now,
                "capabilities_at": now,
                "node_classes": CATALOGUE,
                "model_files": {"checkpoints": [CHECKPOINT]},
            }
            | state
        )
    )
    return server


def member(team: Team):
    return make_user(team=team)


class SimThread(LoopThread):
    """Simulated ComfyUI servers on an event loop of their own thread.

    Dispatch, cancel and reconcile are synchronous and call `asyncio.run`, so
    the simulators cannot share the test's loop; here they serve from a
    background thread while the test calls the real code. `run(coro)` runs a
    coroutine (crash, faults) on their loop.
    """

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root
        self.sims: list[SimulatedComfyUI] = []

    def start(
        self, count: int = 1, *, config: SimulatorConfig | None = None
    ) -> list[SimulatedComfyUI]:
        started = []
        for _ in range(count):
            sim = SimulatedComfyUI(
                "127.0.0.1",
                0,
                data_dir=self.root / f"comfyui-{len(self.sims)}",
                config=config or SimulatorConfig(time_scale=TIME_SCALE),
            )
            self.run(sim.start())
            self.sims.append(sim)
            started.append(sim)
        return started

    def stop(self) -> None:
        for sim in self.sims:
            with contextlib.suppress(Exception):
                self.run(sim.stop())
        self.close()

    def prompts_seen(self, sim: SimulatedComfyUI) -> set[str]:
        """Every prompt id the server holds: queued, running or in its history."""

        async def look() -> set[str]:
            async with ComfyUIClient(sim.base_url) as client:
                queue = await client.get_queue()
                history = await client.get_histories()
            return queue.prompt_ids() | set(history)

        return self.run(look())

    def wait_idle(self, sim: SimulatedComfyUI, timeout: float = 20.0) -> None:
        """Until the server's queue is empty (not a timed assertion: a bound on waiting)."""

        async def idle() -> None:
            async with ComfyUIClient(sim.base_url) as client:
                while (await client.get_queue()).remaining:  # noqa: ASYNC110 - polls a server
                    await asyncio.sleep(0.02)

        self.run(asyncio.wait_for(idle(), timeout), timeout=None)


def running_sims(tmp_path: Path) -> Iterator[SimThread]:
    """For a module's fixture: `yield from running_sims(tmp_path)`."""
    sims = SimThread(tmp_path)
    try:
        yield sims
    finally:
        sims.stop()


def sync_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    """django-q2 runs jobs inline (its `sync` mode), as in production but in-process."""
    monkeypatch.setattr(Conf, "SYNC", True)


def private_dispatch_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Own keys for the dispatch lock, wake-up and hand-off sweep: other test runs share Redis."""
    token = uuid.uuid4().hex
    monkeypatch.setattr(dispatch, "LOCK_KEY", f"test:{token}:dispatch-claim")
    monkeypatch.setattr(enqueue, "WAKE_KEY", f"test:{token}:dispatch-wake")
    monkeypatch.setattr(sweep, "KEY_PREFIX", f"test:{token}:sweep")


# Fixtures for the queue/dispatch test modules; import the *_fixture names (pytest
# finds them by their `name`).


@pytest.fixture(name="sim_thread")
def sim_thread_fixture(tmp_path: Path) -> Iterator[SimThread]:
    yield from running_sims(tmp_path)


@pytest.fixture(name="own_dispatch_keys")
def own_dispatch_keys_fixture(monkeypatch: pytest.MonkeyPatch) -> None:
    private_dispatch_keys(monkeypatch)


@pytest.fixture(name="enqueued")
def enqueued_fixture(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Jobs queued with django-q's async_task, recorded instead of sent."""
    jobs: list[tuple] = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda *args, **kw: jobs.append(args))
    return jobs


def register(sim: SimulatedComfyUI, **fields: Any) -> Server:
    return make_live_server(sim.base_url, name=f"sim-{sim.port}", **fields)


def read_capabilities(loop: LoopThread, server: Server) -> Server:
    """What the monitor does for a healthy server: read its node classes, model
    lists and /object_info from the server itself, and store them."""
    from servers.monitor.capabilities import fetch_capabilities
    from servers.monitor.state import write_capabilities

    async def read():
        async with ComfyUIClient(server.base_url) as client:
            return await fetch_capabilities(client)

    found = loop.run(read())
    write_capabilities(
        server.pk, found.node_classes, found.model_files, timezone.now(), found.object_info
    )
    return server


def register_known(loop: LoopThread, sim: SimulatedComfyUI, **fields: Any) -> Server:
    """A healthy registered server whose capabilities the monitor has read from `sim`."""
    return read_capabilities(loop, register(sim, **fields))


@contextlib.contextmanager
def threads_on_a_file_database(path: Path) -> Iterator[None]:
    """Let other threads share the test database the way processes share a real one.

    The SQLite test database lives in memory with a shared cache, where
    concurrent writers fail at once ("database table is locked") instead of
    waiting. For the duration, new connections (other threads) open a file copy
    instead, with the project's WAL/IMMEDIATE/busy-timeout settings, as
    production's processes do; afterwards the file is copied back. The calling
    thread must not touch the database inside the block. (On PostgreSQL this
    is unnecessary and does nothing.)
    """
    connection = connections["default"]
    if connection.vendor != "sqlite":
        yield
        return
    connection.ensure_connection()
    memory = connection.connection
    with sqlite3.connect(path) as copy:
        memory.backup(copy)
    name = connection.settings_dict["NAME"]
    connection.settings_dict["NAME"] = str(path)
    try:
        yield
    finally:
        connection.settings_dict["NAME"] = name
        with sqlite3.connect(path) as copy:
            copy.backup(memory)
