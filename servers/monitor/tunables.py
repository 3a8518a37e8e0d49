"""The monitor's view of `FleetSettings`, re-read every reconcile so admin edits apply live."""

from __future__ import annotations

from dataclasses import dataclass

from servers.models import FleetSettings


@dataclass(frozen=True)
class Tunables:
    health_timeout: float
    queue_timeout: float
    health_interval: float
    failures_before_unhealthy: int
    recheck_backoff_base: float
    recheck_backoff_cap: float
    capabilities_ttl: float
    affinity_window: float
    load_cache_age: float

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
            affinity_window=float(fleet.affinity_window),
            load_cache_age=float(fleet.load_cache_age),
        )

    @classmethod
    def defaults(cls) -> Tunables:
        """The model's defaults, until the first read of the database."""
        return cls.from_settings(FleetSettings())


def load_tunables() -> Tunables:
    """Sync (ORM): call through `database_sync_to_async`."""
    return Tunables.from_settings(FleetSettings.load())
