"""A simulated ComfyUI in a background thread, for tests that drive a real `serve`."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from servers.simulator import SimulatedComfyUI, SimulatorConfig


class SimulatorThread:
    """A simulated ComfyUI on a fixed port, in its own event loop, started and stopped at will."""

    def __init__(self, port: int, data_dir: Path, config: SimulatorConfig | None = None) -> None:
        self.port, self.data_dir, self.config = port, data_dir, config
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.sim: SimulatedComfyUI | None = None

    def _run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=20)

    def start(self) -> None:
        self.sim = SimulatedComfyUI(
            "127.0.0.1", self.port, data_dir=self.data_dir, config=self.config
        )
        self._run(self.sim.start())

    def stop(self) -> None:
        if self.sim is not None:
            self._run(self.sim.stop())
            self.sim = None

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
