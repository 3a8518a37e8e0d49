"""Simulated ComfyUI servers on an event loop of their own thread.

Code under test that is synchronous (views, dispatch's `asyncio.run`) or a
`serve` subprocess cannot share the test's event loop with a simulator, so the
simulators serve from a background thread and tests hand them coroutines.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from servers.simulator import SimulatedComfyUI, SimulatorConfig


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
