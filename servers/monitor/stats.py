"""The JSON kept in `ServerState.event_stats`: stream statistics (S6) and cache counts (S8)."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from servers.comfyui import StreamStats


def event_stats(stream: StreamStats, capabilities: dict[str, Any]) -> dict[str, Any]:
    return {
        "connected": stream.connected,
        "connected_since": stream.connected_since.isoformat() if stream.connected_since else None,
        "uptime_s": round(stream.uptime, 1),
        "reconnects": stream.reconnects,
        "failed_attempts": stream.failed_attempts,
        "last_error": stream.last_error,
        "events_total": stream.events_total,
        "by_type": dict(stream.events_by_type),
        "events_per_second": round(stream.events_per_second, 2),
        "dropped_events": stream.dropped_events,
        "parse_errors": stream.parse_errors,
        "capabilities": capabilities,
        "updated_at": timezone.now().isoformat(),
    }
