"""An on-demand check of one server: the "Test" button, the admin action, the API.

Runs the same two requests the monitor polls (/system_stats for health, /queue
for load) with the fleet's timeouts, and reports what happened without raising.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from typing import Any

from servers.comfyui import ComfyUIClient, ComfyUIError, Timeouts
from servers.models import FleetSettings, Server


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    response_ms: float | None
    queue_running: int | None
    queue_pending: int | None
    error: str | None
    comfyui_version: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


async def probe(server: Server, fleet: FleetSettings) -> ProbeResult:
    health = Timeouts(connect=fleet.health_timeout, read=fleet.health_timeout)
    load = Timeouts(connect=fleet.queue_timeout, read=fleet.queue_timeout)
    started = time.perf_counter()
    async with ComfyUIClient(server.base_url, headers=server.auth_headers, get_retries=0) as client:
        try:
            stats = await client.system_stats(timeouts=health)
        except ComfyUIError as error:
            return ProbeResult(False, None, None, None, f"{type(error).__name__}: {error}")
        response_ms = (time.perf_counter() - started) * 1000
        try:
            queue = await client.get_queue(timeouts=load)
        except ComfyUIError as error:
            # Healthy but /queue is unavailable: B1's fallback reports no load figures.
            return ProbeResult(
                True, response_ms, None, None, f"/queue failed: {error}", stats.comfyui_version
            )
    return ProbeResult(
        True, response_ms, len(queue.running), len(queue.pending), None, stats.comfyui_version
    )


async def probe_many(servers: list[Server]) -> dict[int, ProbeResult]:
    """Probe several servers in parallel (the admin's bulk action)."""
    from asgiref.sync import sync_to_async

    fleet = await sync_to_async(FleetSettings.load)()
    results = await asyncio.gather(*(probe(server, fleet) for server in servers))
    return {server.pk: result for server, result in zip(servers, results, strict=True)}
