"""Small test doubles shared by the ComfyUI client and stream tests."""

from __future__ import annotations

import asyncio
import socket

from comfyweb.backoff import Backoff
from servers.comfyui import Event, Subscription

GUARD = 30  # seconds; a guard against hangs, never a synchronisation


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def next_of(sub: Subscription, kind: type, *, skip: bool = True) -> Event:
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
