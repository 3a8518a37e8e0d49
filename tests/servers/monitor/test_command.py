"""`manage.py monitor` runs until SIGTERM/SIGINT and then shuts down cleanly."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from comfyweb.backoff import Backoff
from servers.management.commands.monitor import run_until_signalled
from servers.monitor import heartbeat
from servers.monitor.monitor import Monitor
from tests.monitoring import wait_until

from .conftest import TICK, RecordingHandler

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_signal_stops_the_monitor_with_streams_closed(signum, start_comfyui_sims, sim_server):
    (sim,) = await start_comfyui_sims(1)
    await sim_server(sim)
    monitor = Monitor(
        tick=TICK,
        handler=RecordingHandler(),
        on_visible_change=lambda server_id: None,
        stream_backoff=lambda: Backoff(base=0.1, cap=0.5, jitter=0.05),
    )
    task = asyncio.create_task(run_until_signalled(monitor))
    await wait_until(
        lambda: any(w.stream_stats.connected for w in monitor.watchers.values()),
        what="watching",
    )
    watcher = next(iter(monitor.watchers.values()))

    os.kill(os.getpid(), signum)
    await asyncio.wait_for(task, 30)
    assert not monitor.watchers
    assert not watcher.stream_stats.connected
    assert heartbeat.read_heartbeats() == []
    # The handlers are gone again: the next signal would not be swallowed.
    assert not asyncio.get_running_loop().remove_signal_handler(signum)
