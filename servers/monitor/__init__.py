"""The monitor process (`manage.py monitor`, issue 4): the fleet's eyes.

Modules, one job each:
    monitor.py       Monitor: reconcile watchers with its leases, event stats, heartbeat
    leases.py        which servers this monitor watches: leases, fair shares, takeover
    watcher.py       ServerWatcher: one server's EventStream and check loop
    checks.py        one /system_stats + /queue check, with timeouts
    state.py         ServerState / FailureRecord writes (health, failures, re-admission)
    capabilities.py  node classes and model files, TTL cache with hit/miss counts
    registry.py      the enabled servers, and the start/stop plan when they change
    tunables.py      FleetSettings as the monitor reads them
    stats.py         the event_stats JSON
    visible_changes.py  tell browsers of a server only when something they see changed
    heartbeat.py     heartbeats in Redis (one per monitor) and the /healthz "monitor" check
    work.py          WorkHooks: the seam to the work (events, tick, dispatch, reconcile)
"""

from __future__ import annotations
