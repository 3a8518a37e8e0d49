"""Execution events go to the handler; event statistics, capabilities counts, heartbeat."""

from __future__ import annotations

import asyncio
import os

import pytest
from channels.db import database_sync_to_async

from servers.comfyui import ComfyUIClient, Disconnected, ExecutionSuccess, Reconnected
from servers.models import FailureKind, FailureRecord, Health, ServerState
from servers.monitor import heartbeat
from tests.monitoring import wait_until
from tests.servers.simulator.helpers import empty_save, slow_prompt

pytestmark = pytest.mark.django_db(transaction=True)


async def test_execution_events_of_our_prompts_reach_the_handler(watched):
    sim, server, watcher, running = watched.sim, watched.server, watched.watcher, watched.running
    async with ComfyUIClient(sim.base_url) as client:
        receipt = await client.submit(empty_save(), client_id=watcher.spec.client_id)

    def finished() -> bool:
        return any(
            isinstance(event, ExecutionSuccess) and event.prompt_id == receipt.prompt_id
            for _, event in running.handler.events
        )

    await wait_until(finished, what="execution_success handed over")
    assert {sid for sid, _ in running.handler.events} == {server.pk}
    assert all(event.prompt_id == receipt.prompt_id for _, event in running.handler.events)


async def test_event_statistics_are_written_per_server(watched):
    sim, server, watcher = watched.sim, watched.server, watched.watcher
    async with ComfyUIClient(sim.base_url) as client:
        await client.submit(slow_prompt(3, 0.05), client_id=watcher.spec.client_id)

    def stats():
        value = ServerState.objects.get(server=server).event_stats
        return value if value.get("by_type", {}).get("execution_success") else None

    written = await wait_until(stats, what="event stats with the run's events")
    assert written["connected"] is True
    assert written["connected_since"]
    assert written["events_total"] >= sum(written["by_type"].values()) > 0
    assert written["by_type"]["progress"] >= 3
    assert written["events_per_second"] > 0
    assert written["reconnects"] == 0
    assert {"hits", "misses", "hit_rate"} <= set(written["capabilities"])


async def test_dropped_stream_is_recorded_and_reconnect_refreshes_capabilities(
    start_comfyui_sims, sim_server, start_monitor
):
    (sim,) = await start_comfyui_sims(1)
    server = await sim_server(sim)
    running = await start_monitor()
    cache = running.monitor.shared.capabilities
    await wait_until(lambda: cache.counts(server.pk)["hits"] >= 2, what="cache hits")
    assert cache.counts(server.pk)["misses"] == 1  # the first fetch only

    await sim.drop_websockets()
    await wait_until(lambda: cache.counts(server.pk)["misses"] == 2, what="refetch after restart")
    kinds = [type(event) for _, event in running.handler.events]
    assert Disconnected in kinds
    assert Reconnected in kinds

    def stream_failure():
        return FailureRecord.objects.filter(
            server=server, kind=FailureKind.STREAM, recovered_at__isnull=False
        ).first()

    record = await wait_until(stream_failure, what="stream failure recorded and healed")
    assert "event stream lost" in record.reason
    await wait_until(
        lambda: ServerState.objects.get(server=server).event_stats.get("reconnects") == 1
    )
    # A dropped socket is not a failed health check.
    assert await wait_until(
        lambda: ServerState.objects.filter(
            server=server, health=Health.HEALTHY, consecutive_failures=0
        ).exists()
    )


async def test_heartbeat_is_in_redis_while_running_and_gone_after_shutdown(
    start_comfyui_sims, sim_server, start_monitor
):
    await database_sync_to_async(heartbeat.redis_client().delete)(heartbeat.KEY)
    assert not (await database_sync_to_async(heartbeat.check_monitor)()).ok
    (sim,) = await start_comfyui_sims(1)
    await sim_server(sim)
    running = await start_monitor()

    def beat():
        beats = heartbeat.read_heartbeats()
        return beats[0] if beats and beats[0]["servers"] == 1 else None

    value = await wait_until(beat, what="heartbeat")
    assert value["pid"] == os.getpid()
    assert value["id"] == running.monitor.monitor_id
    component = await database_sync_to_async(heartbeat.check_monitor)()
    assert component.ok
    assert component.extra["servers"] == 1
    assert [m["id"] for m in component.extra["monitors"]] == [value["id"]]

    await running.close()
    assert await database_sync_to_async(heartbeat.read_heartbeats)() == []
    assert not (await database_sync_to_async(heartbeat.check_monitor)()).ok


async def test_shutdown_closes_every_stream_and_leaves_no_tasks(
    start_comfyui_sims, sim_server, start_monitor
):
    sims = await start_comfyui_sims(2)
    for sim in sims:
        await sim_server(sim)
    before = asyncio.all_tasks()
    running = await start_monitor()
    await wait_until(lambda: len(running.monitor.watchers) == 2)
    watchers = list(running.monitor.watchers.values())
    await wait_until(lambda: all(w.stream_stats.connected for w in watchers))

    await running.close()
    assert running.task.done()
    assert running.task.exception() is None
    assert not any(w.stream_stats.connected for w in watchers)
    leftover = [
        task
        for task in asyncio.all_tasks() - before
        if not task.done() and task is not asyncio.current_task()
    ]
    assert not [t.get_name() for t in leftover if t.get_name().startswith(("monitor", "comfyui"))]
    await wait_until(lambda: all(not sim.hub.sockets for sim in sims), what="sockets closed")
