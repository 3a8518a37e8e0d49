"""`SimulatedComfyUI`: one ComfyUI-compatible server on a real socket.

Usage (tests, benchmarks, `manage.py comfyui_sim`)::

    sim = SimulatedComfyUI(port=0, data_dir=tmp_path, time_scale=0.1)
    await sim.start()          # sim.base_url == "http://127.0.0.1:<port>"
    ...
    await sim.stop()

Fault injection: `drop_websockets()`, `refuse_connections()` /
`accept_connections()`, `sim.faults` (HTTP error status, stalls, delays) and
`crash()` (dies mid-prompt: nothing more is sent, the queue is lost; `start()`
again brings it back on the same port with empty queue and history).
"""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
import socket

from aiohttp import web

from servers.simulator.app import create_app
from servers.simulator.config import DataDirs, SimulatorConfig
from servers.simulator.executor import Executor
from servers.simulator.faults import Faults
from servers.simulator.history import History
from servers.simulator.hub import Hub
from servers.simulator.prompt_queue import PromptQueue
from servers.simulator.routes_prompt import queue_info


class SimulatedComfyUI:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        data_dir: pathlib.Path,
        time_scale: float = 1.0,
        config: SimulatorConfig | None = None,
    ):
        self.host = host
        self.port = port
        # A copy: one config object may describe several servers of a fleet.
        self.config = dataclasses.replace(config) if config else SimulatorConfig()
        if config is None or time_scale != 1.0:
            self.config.time_scale = time_scale
        self.dirs = DataDirs(pathlib.Path(data_dir))
        self.faults = Faults()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._outage: asyncio.Future | None = None
        self._build_state()

    def _build_state(self) -> None:
        # Everything a process restart loses.
        self.hub = Hub(lambda: queue_info(self))
        self.queue = PromptQueue(self.hub.queue_updated)
        self.history = History()
        self.executor = Executor(
            self.hub, self.queue, self.history, self.config, self.dirs, self.faults
        )

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://", 1) + "/ws"

    async def start(self) -> None:
        self.dirs.prepare()
        self.hub.start()
        self.executor.start()
        self._runner = web.AppRunner(
            create_app(self), handle_signals=False, access_log=None, shutdown_timeout=2.0
        )
        await self._runner.setup()
        await self._listen()

    async def _listen(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await self._site.start()
        server = self._site._server
        sockets = getattr(server, "sockets", None) or []
        for sock in sockets:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                self.port = sock.getsockname()[1]
                break

    async def stop(self) -> None:
        """Close sockets, cancel execution; safe to call twice."""
        if self._outage is not None and self._outage is not asyncio.current_task():
            self._outage.cancel()  # a stopped simulator stays stopped
        await self.executor.stop()
        await self.hub.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._site = None
        self.dirs.wipe_temp()

    async def crash(self) -> None:
        """Die as a killed process would: mid-prompt, no goodbye messages."""
        await self.stop()
        self._build_state()

    async def drop_websockets(self) -> None:
        await self.hub.drop_all()

    async def refuse_connections(self) -> None:
        """Stop listening (new connections are refused); open ones keep working."""
        if self._site is not None:
            await self._site.stop()
            self._site = None

    def schedule_outage(self, seconds: float) -> None:
        """Crash now and start again after `seconds` (the demo's outage control)."""
        if self._outage is not None and not self._outage.done():
            return
        self._outage = asyncio.ensure_future(self._outage_for(seconds))

    async def _outage_for(self, seconds: float) -> None:
        await self.crash()
        await asyncio.sleep(seconds)
        if self._runner is None:
            await self.start()

    async def accept_connections(self) -> None:
        if self._site is None and self._runner is not None:
            await self._listen()
