"""Servers added, edited, disabled or removed in the admin are picked up live (S6)."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from servers.models import Health, Server, ServerLease, ServerState
from tests.monitoring import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


async def test_server_added_in_the_database_is_watched_within_seconds(
    start_comfyui_sims, sim_server, start_monitor
):
    first, second = await start_comfyui_sims(2)
    await sim_server(first)
    running = await start_monitor()
    await wait_until(lambda: len(running.monitor.watchers) == 1, what="first watched")

    added = await sim_server(second)
    await wait_until(lambda: added.pk in running.monitor.watchers, what="new server watched")
    await wait_until(
        lambda: ServerState.objects.filter(server=added, health=Health.HEALTHY).exists(),
        what="new server checked",
    )
    watcher = running.monitor.watchers[added.pk]
    await wait_until(lambda: watcher.stream_stats.connected, what="its event stream open")
    # Under the lease it took, with its own client id for the server.
    lease = await database_sync_to_async(ServerLease.objects.get)(server=added)
    assert lease.monitor_id == running.monitor.monitor_id
    assert watcher.stream_stats.client_id == await database_sync_to_async(lambda: lease.client_id)()


async def test_disabled_and_removed_servers_stop_being_watched(
    start_comfyui_sims, sim_server, start_monitor
):
    sims = await start_comfyui_sims(2)
    disabled, removed = [await sim_server(sim) for sim in sims]
    running = await start_monitor()
    await wait_until(lambda: len(running.monitor.watchers) == 2, what="both watched")
    watcher = running.monitor.watchers[disabled.pk]

    await database_sync_to_async(Server.objects.filter(pk=disabled.pk).update)(enabled=False)
    await wait_until(lambda: disabled.pk not in running.monitor.watchers, what="disabled dropped")
    # Dropped first, then stopped: its stream closes as the stop finishes.
    await wait_until(lambda: not watcher.stream_stats.connected, what="its stream closed")

    await database_sync_to_async(removed.delete)()
    await wait_until(lambda: not running.monitor.watchers, what="removed dropped")
    # And the simulators see no socket of ours any more.
    await wait_until(lambda: all(not sim.hub.sockets for sim in sims), what="sockets closed")


async def test_changed_url_restarts_the_watcher_on_the_new_address(
    start_comfyui_sims, sim_server, start_monitor
):
    old, new = await start_comfyui_sims(2)
    server = await sim_server(old, name="moving")
    running = await start_monitor()
    await wait_until(lambda: server.pk in running.monitor.watchers)
    first = running.monitor.watchers[server.pk]

    def move() -> None:
        server.base_url = new.base_url
        server.save()

    await database_sync_to_async(move)()
    await wait_until(
        lambda: running.monitor.watchers.get(server.pk) not in (None, first), what="restarted"
    )
    assert running.monitor.watchers[server.pk].spec.base_url == new.base_url
    await wait_until(lambda: running.monitor.watchers[server.pk].stream_stats.connected)


async def test_renamed_server_keeps_its_watcher(start_comfyui_sims, sim_server, start_monitor):
    (sim,) = await start_comfyui_sims(1)
    server = await sim_server(sim, name="before")
    running = await start_monitor()
    await wait_until(lambda: server.pk in running.monitor.watchers)
    watcher = running.monitor.watchers[server.pk]
    await database_sync_to_async(Server.objects.filter(pk=server.pk).update)(name="after")
    await wait_until(lambda: watcher.spec.name == "after", what="renamed")
    assert running.monitor.watchers[server.pk] is watcher
