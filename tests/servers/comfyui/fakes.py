"""Small test doubles shared by the ComfyUI client and stream tests."""

from __future__ import annotations

import asyncio
import socket

from comfyweb.backoff import Backoff
from servers.comfyui import (
    Disconnected,
    Event,
    EventStream,
    Reconnected,
    Subscription,
    is_prompt_end,
)

GUARD = 30  # seconds; a guard against hangs, never a synchronisation


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PromptEvents:
    """One prompt's events, read off the stream's `listen()` as the monitor reads them.

    Made before POST /prompt; keeps the prompt's own events and the connection's
    (`Disconnected`/`Reconnected`), and ends after the prompt's final `executing`
    or when the stream closes.
    """

    def __init__(self, stream: EventStream, prompt_id: str) -> None:
        self.prompt_id = prompt_id
        self._events = stream.listen()
        self._ended = False

    def _mine(self, event: Event) -> bool:
        return event.prompt_id == self.prompt_id or isinstance(event, Disconnected | Reconnected)

    def _ends(self, event: Event) -> bool:
        return is_prompt_end(event) and event.prompt_id == self.prompt_id

    def pending(self) -> list[Event]:
        """This prompt's events queued right now, without waiting."""
        mine: list[Event] = []
        for event in [] if self._ended else self._events.pending():
            if self._mine(event):
                mine.append(event)
                if self._ends(event):
                    break
        return mine

    async def get(self) -> Event:
        while not self._ended:
            event = await self._events.get()
            if self._mine(event):
                if self._ends(event):
                    self._ended = True
                    self._events.close()
                return event
        raise StopAsyncIteration

    def __aiter__(self) -> PromptEvents:
        return self

    async def __anext__(self) -> Event:
        return await self.get()


async def next_of(sub: Subscription | PromptEvents, kind: type, *, skip: bool = True) -> Event:
    """The next event of `kind`; others are skipped (or fail the test, if not `skip`)."""
    while True:
        event = await asyncio.wait_for(sub.get(), GUARD)
        if isinstance(event, kind):
            return event
        assert skip, f"expected {kind.__name__}, got {event!r}"


def quick_backoff(**kwargs) -> Backoff:
    """Millisecond reconnect delays, no jitter: the schedule is exactly predictable."""
    options = {"base": 0.01, "cap": 0.04, "jitter": 0.0, "stable_after": 1000.0}
    return Backoff(**(options | kwargs))
