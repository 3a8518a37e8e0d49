"""Monitor against three simulated servers: health, failover, re-admission (B4, B5, S5, S8)."""

from __future__ import annotations

import logging
import time

import pytest
from channels.db import database_sync_to_async

from comfyweb.backoff import Backoff
from servers.models import FailureKind, FailureRecord, Health, ServerState
from tests.monitoring import wait_until

from .conftest import FAST

pytestmark = pytest.mark.django_db(transaction=True)


def _states(*servers) -> dict[int, ServerState]:
    return {s.server_id: s for s in ServerState.objects.filter(server__in=servers)}


async def test_every_server_becomes_healthy_with_capabilities_and_system_stats(
    start_comfyui_sims, sim_server, start_monitor
):
    sims = await start_comfyui_sims(3)
    servers = [await sim_server(sim) for sim in sims]
    await start_monitor()

    def all_known():
        states = _states(*servers)
        return len(states) == 3 and all(
            s.health == Health.HEALTHY and s.capabilities_at is not None for s in states.values()
        )

    await wait_until(all_known, what="three healthy servers with capabilities")
    for state in (await wait_until(lambda: _states(*servers))).values():
        assert state.comfyui_version
        assert state.device_name
        assert state.vram_total
        assert state.vram_free is not None
        assert {"EmptyImage", "SaveImage"} <= set(state.node_classes)
        assert "checkpoints" in state.model_files
        assert state.queue_source == "queue"
        assert state.response_ms is not None
        assert state.last_healthy_at is not None
        assert state.next_check_at is not None


async def test_stopped_server_is_marked_unhealthy_loses_its_affinity_and_is_readmitted_on_restart(
    start_comfyui_sims, sim_server, start_monitor, caplog
):
    caplog.set_level(logging.INFO, logger="servers.monitor")
    sims = await start_comfyui_sims(3)
    servers = [await sim_server(sim) for sim in sims]
    running = await start_monitor()
    victim, sim = servers[1], sims[1]
    state_of = ServerState.objects.filter(server=victim)

    await wait_until(
        lambda: ServerState.objects.filter(server__in=servers, health=Health.HEALTHY).count() == 3,
        what="all healthy",
    )
    await wait_until(lambda: state_of.update(last_affinity_key="wf-1") or True)
    published_before = running.published.count(victim.pk)

    await sim.crash()
    down_at = time.monotonic()
    await wait_until(
        lambda: state_of.filter(health=Health.UNHEALTHY).exists(), what="victim unhealthy"
    )
    detection = time.monotonic() - down_at

    def failure_history():
        return list(FailureRecord.objects.filter(server=victim, kind=FailureKind.HEALTH))

    records = await wait_until(failure_history)
    assert sum(r.marked_unhealthy for r in records) == 1
    assert len(records) >= FAST["failures_before_unhealthy"]
    state = await wait_until(lambda: state_of.get())
    assert state.unhealthy_since is not None
    assert (state.last_affinity_key, state.last_affinity_at) == ("", None)  # affinity ended
    await wait_until(  # browsers told (in the monitor's next batch of changes)
        lambda: running.published.count(victim.pk) > published_before, what="published"
    )
    # The others never wavered.
    others = [s for s in servers if s != victim]
    assert await wait_until(
        lambda: ServerState.objects.filter(server__in=others, health=Health.HEALTHY).count() == 2
    )
    # An unhealthy server is re-checked on a backoff, not every interval.
    assert await wait_until(lambda: state_of.get().next_check_at is not None)
    assert any("marked unhealthy" in r.getMessage() for r in caplog.records)

    await sim.start()  # same port
    up_at = time.monotonic()
    await wait_until(
        lambda: state_of.filter(health=Health.HEALTHY).exists(), what="victim re-admitted"
    )
    readmission = time.monotonic() - up_at
    state = await wait_until(lambda: state_of.get())
    assert (state.unhealthy_since, state.consecutive_failures) == (None, 0)
    open_health = await wait_until(
        lambda: [
            FailureRecord.objects.filter(
                server=victim, kind=FailureKind.HEALTH, recovered_at__isnull=True
            ).count()
        ]
    )
    assert open_health == [0]
    assert any("re-admitted" in r.getMessage() for r in caplog.records)
    print(f"detection {detection:.2f}s, re-admission {readmission:.2f}s")


async def test_readmission_stamps_recovered_at_on_every_open_failure(watched):
    sim, server, state_of = watched.sim, watched.server, watched.state
    await sim.crash()
    await wait_until(lambda: state_of.filter(health=Health.UNHEALTHY).exists())
    await sim.start()
    await wait_until(lambda: state_of.filter(health=Health.HEALTHY).exists())

    def all_recovered():
        records = list(FailureRecord.objects.filter(server=server))
        return records and all(r.recovered_at is not None for r in records) and records

    records = await wait_until(all_recovered, what="every failure recovered")
    kinds = {r.kind for r in records}
    assert FailureKind.HEALTH in kinds
    assert FailureKind.STREAM in kinds  # the dropped event stream is on record too


async def test_queue_failure_falls_back_to_system_stats_and_stays_healthy(watched):
    sim, server, state_of = watched.sim, watched.server, watched.state
    await wait_until(lambda: state_of.filter(queue_source="queue").exists())

    sim.faults.failing_paths = frozenset({"/queue"})
    sim.faults.http_status = 500
    await wait_until(lambda: state_of.filter(queue_source="system_stats").exists(), what="fallback")
    queue_failures = await wait_until(
        lambda: list(FailureRecord.objects.filter(server=server, kind=FailureKind.QUEUE))
    )
    assert "ServerError" in queue_failures[0].reason
    assert await wait_until(lambda: state_of.filter(health=Health.HEALTHY).exists())

    sim.faults.clear()
    await wait_until(lambda: state_of.filter(queue_source="queue").exists(), what="queue back")
    assert await wait_until(
        lambda: (
            not FailureRecord.objects.filter(
                server=server, kind=FailureKind.QUEUE, recovered_at__isnull=True
            ).exists()
        )
    )
    marked = await wait_until(
        lambda: [FailureRecord.objects.filter(server=server, marked_unhealthy=True).count()]
    )
    assert marked == [0]


async def test_event_stream_changes_trigger_a_check_without_waiting_for_the_schedule(
    start_comfyui_sims, sim_server, start_monitor, fast_settings
):
    # Intervals far longer than the test may take: only the stream can explain a quick check.
    fast_settings.health_interval = 120
    fast_settings.recheck_backoff_base = fast_settings.recheck_backoff_cap = 120
    fast_settings.failures_before_unhealthy = 1
    await database_sync_to_async(fast_settings.save)()
    (sim,) = await start_comfyui_sims(1)
    server = await sim_server(sim)
    running = await start_monitor()
    state_of = ServerState.objects.filter(server=server)
    await wait_until(lambda: state_of.filter(health=Health.HEALTHY).exists())
    watcher = running.monitor.watchers[server.pk]
    await wait_until(lambda: watcher.stream_stats.connected)

    await sim.crash()  # the socket drops: checked at once, found dead
    await wait_until(lambda: state_of.filter(health=Health.UNHEALTHY).exists(), what="down")
    await sim.start()  # the socket comes back: checked at once, re-admitted
    await wait_until(lambda: state_of.filter(health=Health.HEALTHY).exists(), what="back")


async def test_a_server_found_answering_gets_its_event_stream_back_without_waiting_out_its_backoff(
    start_comfyui_sims, sim_server, start_monitor
):
    (sim,) = await start_comfyui_sims(1)
    server = await sim_server(sim)
    # A stream backoff far longer than the test may take: only a check can explain a
    # quick reconnect.
    running = await start_monitor(stream_backoff=lambda: Backoff(base=3600, cap=3600, jitter=0))
    state_of = ServerState.objects.filter(server=server)
    await wait_until(lambda: state_of.filter(health=Health.HEALTHY).exists(), what="healthy")
    watcher = running.monitor.watchers[server.pk]
    await wait_until(lambda: watcher.stream_stats.connected, what="event stream open")

    await sim.crash()
    await wait_until(lambda: state_of.filter(health=Health.UNHEALTHY).exists(), what="down")
    assert not watcher.stream_stats.connected
    await sim.start()  # same port; the stream waits an hour, the checks do not
    await wait_until(lambda: state_of.filter(health=Health.HEALTHY).exists(), what="back")
    await wait_until(lambda: watcher.stream_stats.connected, what="event stream back")
    assert watcher.stream_stats.reconnects == 1
