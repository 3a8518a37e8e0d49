"""Which monitor of a running Deployment holds each server's lease, read from its
database (issue 17: monitors split the fleet by `servers.models.ServerLease`).

Read with a connection of our own rather than `manage.py shell`, so that waiting on
a takeover can poll every fraction of a second. A lease is held while its
`expires_at` is ahead; the monitor that holds it is known by its pid, the middle
of its id (`<host>-<pid>-<tail>`, servers.monitor.heartbeat.new_monitor_id).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from tests.faults.deployment import Deployment

_HELD = """
SELECT s.name, l.monitor_id, l.expires_at
FROM servers_serverlease l JOIN servers_server s ON s.id = l.server_id
WHERE l.monitor_id <> ''
"""


def lease_holders(d: Deployment) -> dict[str, str]:
    """Server name -> id of the monitor whose lease on it has not expired."""
    url = d.env["DATABASE_URL"]
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
            rows = [
                (name, holder, datetime.fromisoformat(until).replace(tzinfo=UTC))
                for name, holder, until in connection.execute(_HELD)
            ]
    else:
        import psycopg

        with psycopg.connect(url) as connection:
            rows = connection.execute(_HELD).fetchall()
    now = datetime.now(UTC)
    return {name: holder for name, holder, until in rows if until > now}


def pid_of(monitor_id: str) -> int:
    return int(monitor_id.rsplit("-", 2)[1])


def monitor_pid(d: Deployment, name: str) -> int:
    """The pid of the monitor process `name` ("monitor", "monitor-2", …)."""
    popen = d.processes[name].popen
    assert popen is not None, f"{name} was never started"
    return popen.pid


def held_by(d: Deployment, name: str) -> set[str]:
    """The servers the monitor process `name` holds leases on now."""
    pid = monitor_pid(d, name)
    return {server for server, holder in lease_holders(d).items() if pid_of(holder) == pid}
