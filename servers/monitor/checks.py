"""One health + load check of one server: `/system_stats` and `/queue` side by side.

The caller may pass the queue it already knows to be current (the server's event
stream has announced no change since it was read): then only `/system_stats` is
asked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass

from servers.comfyui import ComfyUIClient, ComfyUIError, QueueState, SystemStats, Timeouts


@dataclass(frozen=True)
class CheckOutcome:
    stats: SystemStats | None  # None: the health check failed
    health_error: str | None
    response_ms: float | None
    queue: QueueState | None  # None: /queue failed (B1: fall back to system_stats)
    queue_error: str | None

    @property
    def healthy(self) -> bool:
        return self.stats is not None


def _timeouts(seconds: float) -> Timeouts:
    return Timeouts(connect=seconds, read=seconds, write=seconds, pool=seconds)


async def _bounded[T](call: Awaitable[T], seconds: float) -> tuple[T | None, str | None]:
    """Run `call` within `seconds` overall; a failure becomes its description."""
    try:
        # httpx's timeouts are per phase; a server trickling bytes could outlast
        # them, so the whole request also gets a deadline.
        async with asyncio.timeout(seconds):
            return await call, None
    except TimeoutError:
        return None, f"timed out after {seconds:g}s"
    except ComfyUIError as error:
        return None, f"{type(error).__name__}: {error}"


async def check_server(
    client: ComfyUIClient,
    *,
    health_timeout: float,
    queue_timeout: float,
    known_queue: QueueState | None = None,
) -> CheckOutcome:
    started = time.perf_counter()

    async def health() -> tuple[SystemStats | None, str | None, float]:
        result, error = await _bounded(
            client.system_stats(timeouts=_timeouts(health_timeout)), health_timeout
        )
        return result, error, (time.perf_counter() - started) * 1000

    if known_queue is not None:
        (stats, health_error, elapsed), (queue, queue_error) = await health(), (known_queue, None)
    else:
        (stats, health_error, elapsed), (queue, queue_error) = await asyncio.gather(
            health(),
            _bounded(client.get_queue(timeouts=_timeouts(queue_timeout)), queue_timeout),
        )
    return CheckOutcome(
        stats=stats,
        health_error=health_error,
        response_ms=elapsed if stats is not None else None,
        queue=queue,
        queue_error=queue_error,
    )
