"""Fault injection for tests: answer HTTP with an error status, stall responses,
run out of GPU memory until `/free`.

Dropping WebSockets, refusing connections and dying mid-prompt are methods of
`SimulatedComfyUI` because they act on sockets and the listener.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass
class Faults:
    # Answer every HTTP request (not the WebSocket) with this status, empty body.
    http_status: int | None = None
    # Only these request paths get `http_status` (e.g. {"/queue"}); None: all of them.
    failing_paths: frozenset[str] | None = None
    # Extra seconds before every HTTP response.
    delay: float = 0.0
    # Every prompt's first node that really runs raises torch.OutOfMemoryError, as
    # a GPU whose VRAM is held by loaded models does, until a POST /free unloads them.
    out_of_memory_until_free: bool = False
    # Requests currently held by stall(); tests await `until_held(n)`.
    held: int = 0
    _flowing: asyncio.Event = field(default_factory=asyncio.Event)
    _held_changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._flowing.set()

    async def until_held(self, count: int) -> None:
        while self.held < count:
            self._held_changed.clear()
            await self._held_changed.wait()

    def stall(self) -> None:
        """Hold every HTTP request until `release()`."""
        self._flowing.clear()

    def release(self) -> None:
        self._flowing.set()

    def clear(self) -> None:
        self.http_status = None
        self.failing_paths = None
        self.delay = 0.0
        self.out_of_memory_until_free = False
        self.release()

    def fails(self, path: str) -> bool:
        return self.http_status is not None and (
            self.failing_paths is None or path in self.failing_paths
        )

    async def before_response(self) -> None:
        if not self._flowing.is_set():
            self.held += 1
            self._held_changed.set()
            try:
                await self._flowing.wait()
            finally:
                self.held -= 1
        if self.delay > 0:
            await asyncio.sleep(self.delay)
