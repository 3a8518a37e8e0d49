"""Simulated ComfyUI servers on an event loop of their own thread.

Code under test that is synchronous (views, dispatch's `asyncio.run`) or a
`serve` subprocess cannot share the test's event loop with a simulator, so the
simulators serve from a background thread and tests hand them coroutines.
`register` and `register_known` make a simulator a healthy Server row.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from django.utils import timezone

from servers.comfyui import ComfyUIClient
from servers.models import Server
from servers.simulator import SimulatedComfyUI, SimulatorConfig
from tests.factories import capable_state, make_server

# Simulated work runs ten times faster than the recorded timings.
TIME_SCALE = 0.1


class LoopThread:
    """An asyncio loop running in a daemon thread; `run(coro)` waits for its result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run[T](self, coroutine: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


class SimulatorThread(LoopThread):
    """A simulated ComfyUI on a fixed port, started and stopped at will."""

    def __init__(self, port: int, data_dir: Path, config: SimulatorConfig | None = None) -> None:
        super().__init__()
        self.port, self.data_dir, self.config = port, data_dir, config
        self.sim: SimulatedComfyUI | None = None

    def start(self) -> None:
        self.sim = SimulatedComfyUI(
            "127.0.0.1", self.port, data_dir=self.data_dir, config=self.config
        )
        self.run(self.sim.start())

    def stop(self) -> None:
        if self.sim is not None:
            self.run(self.sim.stop())
            self.sim = None

    def close(self) -> None:
        self.stop()
        super().close()


class SimThread(LoopThread):
    """Simulated ComfyUI servers on dynamic ports, all on this thread's loop.

    Dispatch, cancel and reconcile are synchronous and call `asyncio.run`, so
    the simulators cannot share the test's loop; here they serve from a
    background thread while the test calls the real code. `run(coro)` runs a
    coroutine (crash, faults) on their loop. The `sim_thread` fixture gives one.
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


def register(sim: SimulatedComfyUI, *, max_inflight: int = 2, **state: Any) -> Server:
    """A registered, healthy server for `sim`, whose catalogue the monitor has just read."""
    return make_server(
        f"sim-{sim.port}",
        base_url=sim.base_url,
        max_inflight=max_inflight,
        state=capable_state(**state),
    )


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
