"""What a fleet of hundreds costs the monitor at rest stays flat (issue 15, goal 7).

A tick reads and writes a bounded number of times whatever the fleet's size; a
check that finds what the last write said waits for the tick to be written,
with every other server's; `/queue` is read again only when the server's event
stream says its queue changed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable

import pytest
from channels.db import database_sync_to_async
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from servers.comfyui import ComfyUIClient
from servers.models import FailureKind, FailureRecord, Health, Server, ServerState
from servers.monitor.monitor import Monitor
from servers.monitor.registry import enabled_servers
from servers.monitor.state import RoutineCheck
from servers.monitor.watcher import QUIET_CHECKS_EVERY, ServerWatcher
from tests.factories import make_server
from tests.monitoring import wait_until
from tests.servers.simulator.helpers import slow_prompt

from .conftest import RecordingHandler

pytestmark = pytest.mark.django_db(transaction=True)

NEVER = 3600.0  # a watcher's first check, when the test checks by hand


async def queries_of(step: Callable[[], Awaitable[object]]) -> list[str]:
    """The queries run while `step` runs, on the thread every monitor query runs on."""
    capture = CaptureQueriesContext(connection)
    await database_sync_to_async(capture.__enter__)()
    try:
        await step()
    finally:
        await database_sync_to_async(capture.__exit__)(None, None, None)
    return await database_sync_to_async(lambda: [q["sql"] for q in capture.captured_queries])()


def quiet_monitor() -> Monitor:
    return Monitor(handler=RecordingHandler(), on_visible_change=lambda _: None, heartbeat=False)


async def checked_by_hand(server: Server) -> tuple[Monitor, ServerWatcher]:
    """A monitor (not running) and a started watcher of `server` that the test checks."""
    monitor = quiet_monitor()
    await monitor.reload_settings()
    spec = (await database_sync_to_async(enabled_servers)(monitor.monitor_id))[server.pk]
    watcher = monitor.watchers[server.pk] = ServerWatcher(spec, monitor.shared)
    await watcher.start(first_check_in=NEVER)
    return monitor, watcher


async def idle_tick_queries(count: int) -> list[str]:
    """A second tick over `count` healthy servers whose checks found nothing new."""

    def fleet() -> list[int]:
        Server.objects.all().delete()
        return [make_server(state={"health": Health.HEALTHY}).pk for _ in range(count)]

    server_ids = await database_sync_to_async(fleet)()
    monitor = quiet_monitor()
    specs = await database_sync_to_async(enabled_servers)(monitor.monitor_id)
    # Watchers that never start: no network, only what the tick itself does.
    monitor.watchers = {sid: ServerWatcher(spec, monitor.shared) for sid, spec in specs.items()}
    try:
        await monitor.tick_once()  # the first look: every statistic and fingerprint is new
        routine = RoutineCheck.of(timezone.now(), 5.0, 3.0)
        for server_id in server_ids:
            monitor.shared.routine.add(server_id, routine)
        return await queries_of(monitor.tick_once)
    finally:
        await monitor.close()


async def test_an_idle_tick_costs_as_many_queries_for_30_servers_as_for_3():
    few, many = await idle_tick_queries(3), await idle_tick_queries(30)
    assert len(many) == len(few)
    # Nothing was written one server at a time: the routine checks went in one UPDATE,
    # and the monitor's leases were renewed in one.
    updates = [sql for sql in many if sql.startswith("UPDATE")]
    assert len([sql for sql in updates if "serverlease" not in sql]) == 1
    assert len([sql for sql in updates if "serverlease" in sql]) == 1


async def test_a_routine_check_is_written_with_the_tick_and_a_change_at_once(
    start_comfyui_sims, sim_server
):
    (sim,) = await start_comfyui_sims(1)
    server = await sim_server(sim)
    monitor, watcher = await checked_by_hand(server)
    tunables = monitor.shared.tunables
    state_of = database_sync_to_async(lambda: ServerState.objects.get(server=server))
    try:
        # The queue size the stream reports is among what a check compares: a first
        # check made before the stream's first `status` would differ from the second.
        await wait_until(lambda: watcher.queue_remaining is not None, what="the first status")
        await watcher.check_once(tunables)  # the first: written in full
        first = await state_of()
        assert first.health == Health.HEALTHY
        assert first.queue_running == 0

        await watcher.check_once(tunables)  # found the same: waits for the tick
        assert (await state_of()).last_checked_at == first.last_checked_at
        pending = monitor.shared.routine.take()
        assert set(pending) == {server.pk}
        monitor.shared.routine.add(server.pk, pending[server.pk])
        await monitor.flush_stats()
        assert (await state_of()).last_checked_at == pending[server.pk].at
        assert not monitor.shared.routine.take()

        # Someone else's prompt runs there: the check that sees it writes it at once.
        async with ComfyUIClient(sim.base_url) as client:
            await client.submit(slow_prompt(50, 0.1), client_id="someone-else")
        await wait_until(lambda: watcher.queue_remaining == 1, what="the stream's status")
        await watcher.check_once(tunables)
        assert (await state_of()).queue_running == 1
        assert not monitor.shared.routine.take()
    finally:
        await monitor.close()


async def test_a_routine_check_waits_longer_while_the_stream_is_up_within_the_load_cache(
    start_comfyui_sims, sim_server
):
    (sim,) = await start_comfyui_sims(1)
    server = await sim_server(sim)
    monitor = quiet_monitor()
    await monitor.reload_settings()
    tunables = monitor.shared.tunables
    spec = (await database_sync_to_async(enabled_servers)(monitor.monitor_id))[server.pk]
    # Its event stream not (yet) up: nothing would say the server went, so every interval.
    watcher = monitor.watchers[server.pk] = ServerWatcher(spec, monitor.shared)
    try:
        assert await watcher.check_once(tunables) == tunables.health_interval  # written in full
        assert await watcher.check_once(tunables) == tunables.health_interval
        assert monitor.shared.routine.take().keys() == {server.pk}  # it was a routine one
        await watcher.start(first_check_in=NEVER)
        await wait_until(lambda: watcher.stream_stats.connected, what="its stream up")
        await wait_until(lambda: watcher.queue_remaining == 0, what="the stream's first status")
        await watcher.check_once(tunables)  # the queue read again, as the stream came up
        routine = await watcher.check_once(tunables)
        assert monitor.shared.routine.take().keys() == {server.pk}
        assert routine == QUIET_CHECKS_EVERY * tunables.health_interval
        # Never so long that every load report could be older than the balancer trusts.
        hurried = dataclasses.replace(tunables, load_cache_age=2 * tunables.health_interval)
        assert await watcher.check_once(hurried) == tunables.health_interval
        assert monitor.shared.routine.take().keys() == {server.pk}

        # A change found (someone else's prompt) is written at once: back to one interval.
        async with ComfyUIClient(sim.base_url) as client:
            await client.submit(slow_prompt(50, 0.1), client_id="someone-else")
        await wait_until(lambda: watcher.queue_remaining == 1, what="the stream's status")
        assert await watcher.check_once(tunables) == tunables.health_interval
    finally:
        await monitor.close()


async def test_queue_is_read_again_only_when_the_stream_says_it_changed(
    start_comfyui_sims, sim_server
):
    (sim,) = await start_comfyui_sims(1)
    server = await sim_server(sim)
    monitor, watcher = await checked_by_hand(server)
    tunables = monitor.shared.tunables
    queue_failures = database_sync_to_async(
        lambda: FailureRecord.objects.filter(server=server, kind=FailureKind.QUEUE).count()
    )
    try:
        # The stream is up and has told the queue once (ComfyUI's status on connect).
        await wait_until(lambda: watcher.queue_remaining == 0, what="the stream's status")
        await watcher.check_once(tunables)  # reads /queue
        sim.faults.failing_paths = frozenset({"/queue"})
        sim.faults.http_status = 500
        for _ in range(3):  # nothing changed: /queue is not asked, so its failure not seen
            await watcher.check_once(tunables)
        assert await queue_failures() == 0

        async with ComfyUIClient(sim.base_url) as client:
            await client.submit(slow_prompt(50, 0.1), client_id="someone-else")
        await wait_until(lambda: watcher.queue_remaining == 1, what="the stream's status")
        await watcher.check_once(tunables)  # the queue changed: asked, and it fails
        assert await queue_failures() == 1
        state = await database_sync_to_async(lambda: ServerState.objects.get(server=server))()
        assert (state.health, state.queue_source) == (Health.HEALTHY, "system_stats")
    finally:
        await monitor.close()


async def test_a_fleet_met_at_once_is_first_checked_over_one_health_interval(
    start_comfyui_sims, sim_server, fast_settings
):
    fast_settings.health_interval = 60
    await database_sync_to_async(fast_settings.save)()
    sims = await start_comfyui_sims(3)
    for sim in sims:
        await sim_server(sim)
    monitor = quiet_monitor()
    await monitor.reload_settings()
    try:
        await monitor.reconcile()
        # One at once, the others spread over the interval, not all in the same instant.
        delays = sorted(watcher.first_check_in for watcher in monitor.watchers.values())
        assert delays == [0.0, 20.0, 40.0]
        await wait_until(
            lambda: ServerState.objects.filter(health=Health.HEALTHY).exists(),
            what="the first server checked at once",
        )
    finally:
        await monitor.close()
