"""An on-demand check of one server: the "Test" button, the admin action, the API.

Runs the monitor's own check (/system_stats for health, /queue for load, side by
side, with the fleet's timeouts) once, now, and reports what happened without raising.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from typing import Any

from asgiref.sync import sync_to_async

from servers.clients import client_for
from servers.models import FleetSettings, Server
from servers.monitor.checks import check_server


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
    async with client_for(server, "check") as client:
        outcome = await check_server(
            client, health_timeout=fleet.health_timeout, queue_timeout=fleet.queue_timeout
        )
    if outcome.stats is None:
        return ProbeResult(False, None, None, None, outcome.health_error)
    version = outcome.stats.comfyui_version
    if outcome.queue is None:
        # Healthy but /queue is unavailable: B1's fallback has no load figures.
        error = f"/queue failed: {outcome.queue_error}"
        return ProbeResult(True, outcome.response_ms, None, None, error, version)
    running, pending = len(outcome.queue.running), len(outcome.queue.pending)
    return ProbeResult(True, outcome.response_ms, running, pending, None, version)


async def probe_many(servers: list[Server]) -> dict[int, ProbeResult]:
    """Probe several servers in parallel (the admin's bulk action)."""
    fleet = await sync_to_async(FleetSettings.load)()
    results = await asyncio.gather(*(probe(server, fleet) for server in servers))
    return {server.pk: result for server, result in zip(servers, results, strict=True)}
