"""The monitor's view of `FleetSettings`, re-read every reconcile so admin edits apply live."""

from __future__ import annotations

from dataclasses import dataclass

from servers.models import FleetSettings


@dataclass(frozen=True)
class Tunables:
    health_timeout: float = 10.0
    queue_timeout: float = 5.0
    health_interval: float = 5.0
    failures_before_unhealthy: int = 2
    recheck_backoff_base: float = 5.0
    recheck_backoff_cap: float = 120.0
    capabilities_ttl: float = 600.0

    @classmethod
    def from_settings(cls, fleet: FleetSettings) -> Tunables:
        return cls(
            health_timeout=fleet.health_timeout,
            queue_timeout=fleet.queue_timeout,
            health_interval=fleet.health_interval,
            failures_before_unhealthy=max(1, fleet.failures_before_unhealthy),
            recheck_backoff_base=fleet.recheck_backoff_base,
            recheck_backoff_cap=fleet.recheck_backoff_cap,
            capabilities_ttl=float(fleet.capabilities_ttl),
        )


def load_tunables() -> Tunables:
    """Sync (ORM): call through `database_sync_to_async`."""
    return Tunables.from_settings(FleetSettings.load())
