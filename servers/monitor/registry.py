"""Which servers the monitor should watch, and what changed since the last look.

Read from the database every couple of seconds so that servers added, edited,
disabled or removed in the admin are picked up without restarting the monitor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from servers.models import FleetSettings, Server, client_id_for, leased_client_id


@dataclass(frozen=True)
class ServerSpec:
    """What a watcher needs to know about one server; compared to detect edits."""

    id: int
    name: str
    base_url: str
    client_id: str  # its monitor's own for the server
    headers: tuple[tuple[str, str], ...] = field(default=())
    # The server's client id without a monitor's tail: every monitor's begins with it.
    base_client_id: str = ""

    @property
    def connection(self) -> tuple[str, str, tuple[tuple[str, str], ...]]:
        """The fields that need a new socket and HTTP client when they change."""
        return (self.base_url, self.client_id, self.headers)

    def header_dict(self) -> dict[str, str]:
        return dict(self.headers)

    @property
    def auth_headers(self) -> dict[str, str]:
        return self.header_dict()


def enabled_servers(monitor_id: str) -> dict[int, ServerSpec]:
    """Sync (ORM), two queries whatever the fleet's size: every enabled server, by id,
    as `monitor_id` would watch it (with its own client id)."""
    deployment = FleetSettings.load().deployment_id
    rows = Server.objects.enabled().values_list("pk", "name", "base_url", "auth_headers")
    return {
        pk: ServerSpec(
            id=pk,
            name=name,
            base_url=base_url,
            client_id=leased_client_id(pk, deployment, monitor_id),
            headers=tuple(sorted((headers or {}).items())),
            base_client_id=client_id_for(pk, deployment),
        )
        for pk, name, base_url, headers in rows
    }


@dataclass(frozen=True)
class Plan:
    start: tuple[ServerSpec, ...]  # new, or edited in a way that needs a new connection
    stop: tuple[int, ...]  # gone, disabled, or about to be restarted
    rename: tuple[ServerSpec, ...]  # edited without touching the connection


def plan(current: Mapping[int, ServerSpec], wanted: Mapping[int, ServerSpec]) -> Plan:
    """Pure: the watchers to stop and start to go from `current` to `wanted`."""
    stop = [sid for sid in current if sid not in wanted]
    start = [spec for sid, spec in wanted.items() if sid not in current]
    rename = []
    for sid, spec in wanted.items():
        old = current.get(sid)
        if old is None or old == spec:
            continue
        if old.connection != spec.connection:
            stop.append(sid)
            start.append(spec)
        else:
            rename.append(spec)
    return Plan(tuple(start), tuple(sorted(stop)), tuple(rename))
