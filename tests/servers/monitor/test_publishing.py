"""Browsers hear about a server only when something they can see changed (B8)."""

from __future__ import annotations

import importlib.util
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from comfyweb.consumers import LiveConsumer
from servers.models import FailureRecord, Health, ServerState
from servers.monitor.visible_changes import RATE_INTERVAL, ChangePublisher, visible_fingerprint
from tests.clocks import FakeClock
from tests.factories import make_server, make_user
from tests.monitoring import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

HAS_STATUS_PANEL = importlib.util.find_spec("servers.status_panel") is not None


async def test_publisher_calls_the_hook_only_when_the_visible_state_changes(
    start_comfyui_sims, sim_server
):
    (sim,) = await start_comfyui_sims(1)
    server = await sim_server(sim)
    calls: list[int] = []
    publisher = ChangePublisher(calls.append)
    state = ServerState.objects.filter(server=server)

    assert await publisher.refresh(server.pk)
    assert not await publisher.refresh(server.pk)
    # Invisible: a newer check time, a few MB of VRAM.
    await database_sync_to_async(state.update)(vram_total=8 * 1024**3, vram_free=4 * 1024**3)
    assert await publisher.refresh(server.pk)
    await database_sync_to_async(state.update)(vram_free=4 * 1024**3 - 5_000_000)
    assert not await publisher.refresh(server.pk)
    # Visible: health, queue, a new failure.
    await database_sync_to_async(state.update)(health=Health.UNHEALTHY)
    assert await publisher.refresh(server.pk)
    await database_sync_to_async(state.update)(queue_pending=3)
    assert await publisher.refresh(server.pk)
    await database_sync_to_async(FailureRecord.objects.create)(
        server=server, kind="health", reason="x"
    )
    assert await publisher.refresh(server.pk)
    assert calls == [server.pk] * 5


async def test_fingerprint_of_a_deleted_server_is_none(start_comfyui_sims, sim_server):
    (sim,) = await start_comfyui_sims(1)
    server = await sim_server(sim)
    await database_sync_to_async(server.delete)()
    assert await database_sync_to_async(visible_fingerprint)(server.pk) is None


async def test_a_failing_hook_does_not_stop_the_publisher(start_comfyui_sims, sim_server):
    (sim,) = await start_comfyui_sims(1)
    server = await sim_server(sim)

    def broken(server_id: int) -> None:
        raise RuntimeError("template error")

    assert await ChangePublisher(broken).refresh(server.pk)


@pytest.mark.skipif(not HAS_STATUS_PANEL, reason="servers.status_panel not there yet")
async def test_browser_subscribed_to_servers_sees_a_server_go_down(
    start_comfyui_sims, sim_server, start_monitor
):
    from servers import status_panel

    sims = await start_comfyui_sims(3)
    servers = [await sim_server(sim) for sim in sims]
    await start_monitor(on_visible_change=None)  # the real publisher
    await wait_until(
        lambda: ServerState.objects.filter(server__in=servers, health=Health.HEALTHY).count() == 3,
        what="all healthy",
    )
    user = await database_sync_to_async(make_user)()
    communicator = WebsocketCommunicator(LiveConsumer.as_asgi(), "/ws/live/")
    communicator.scope["user"] = user
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_json_to({"action": "subscribe", "topic": "servers"})
    assert (await communicator.receive_json_from(timeout=10))["type"] == "subscribed"

    await sims[2].crash()
    victim = servers[2]
    row = f'id="server-{victim.pk}" class="health-unhealthy"'
    # The snapshot and any updates rendered before the failover come first; a
    # guard timeout on each receive ends a hang. The row comes alone, or in the
    # whole table when it is the first the monitor pushes.
    targets = {status_panel.ROWS_TARGET, status_panel.row_target(victim.pk)}
    while True:
        message = await communicator.receive_json_from(timeout=20)
        if message.get("target") in targets and row in message["html"]:
            break
    await communicator.disconnect()


async def test_an_expired_affinity_is_a_visible_change(start_comfyui_sims, sim_server):
    (sim,) = await start_comfyui_sims(1)
    server = await sim_server(sim)
    calls: list[int] = []
    publisher = ChangePublisher(calls.append)
    state = ServerState.objects.filter(server=server)
    long_ago = timezone.now() - timedelta(seconds=60)
    await database_sync_to_async(state.update)(last_affinity_key="wf", last_affinity_at=long_ago)
    assert await publisher.refresh(server.pk, affinity_window=120)  # affinity
    assert not await publisher.refresh(server.pk, affinity_window=120)
    assert await publisher.refresh(server.pk, affinity_window=30)  # the affinity ran out
    assert calls == [server.pk, server.pk]


async def test_a_change_of_the_event_rate_alone_is_published_at_most_every_rate_interval(
    start_comfyui_sims, sim_server
):
    (sim,) = await start_comfyui_sims(1)
    server = await sim_server(sim)
    calls: list[int] = []
    clock = FakeClock()
    publisher = ChangePublisher(calls.append, clock=clock)
    state = ServerState.objects.filter(server=server)

    def rate(value: float) -> None:
        state.update(event_stats={"events_per_second": value})

    await database_sync_to_async(rate)(1.0)
    assert await publisher.refresh(server.pk)
    await database_sync_to_async(rate)(2.0)
    assert not await publisher.refresh(server.pk)  # the rate alone, too soon
    await database_sync_to_async(state.update)(health=Health.UNHEALTHY)
    assert await publisher.refresh(server.pk)  # anything else: at once, with the rate
    await database_sync_to_async(rate)(3.0)
    clock.advance(RATE_INTERVAL)
    assert await publisher.refresh(server.pk)
    assert calls == [server.pk] * 3


async def test_servers_that_changed_together_are_looked_at_and_published_together(
    start_comfyui_sims, sim_server
):
    sims = await start_comfyui_sims(3)
    servers = [await sim_server(sim) for sim in sims]
    calls: list[int] = []
    publisher = ChangePublisher(calls.append)
    for server in servers:
        publisher.soon(server.pk)
    await publisher.close()  # publishes what is waiting
    assert sorted(calls) == sorted(s.pk for s in servers)


@pytest.mark.skipif(not HAS_STATUS_PANEL, reason="servers.status_panel not there yet")
def test_publishing_some_servers_renders_their_rows_not_the_whole_table(monkeypatch):
    from servers import status_panel

    sent: list[tuple[str, str]] = []

    def record(topic: str, target: str, *args: object, **kwargs: object) -> None:
        sent.append((topic, target))

    monkeypatch.setattr(status_panel.live, "publish_fragment", record)
    monkeypatch.setattr(status_panel.live, "publish_refresh", record)
    monkeypatch.setattr(status_panel, "_pushed_order", None)
    first, second = make_server("a-first"), make_server("b-second")

    status_panel.publish_servers([first.pk])  # the first push: the whole table
    assert (status_panel.TOPIC, status_panel.ROWS_TARGET) in sent
    sent.clear()
    status_panel.publish_servers([second.pk])  # the rows are the page's: one row
    assert (status_panel.TOPIC, status_panel.row_target(second.pk)) in sent
    assert (status_panel.TOPIC, status_panel.ROWS_TARGET) not in sent
    assert (status_panel.TOPIC, status_panel.row_target(first.pk)) not in sent
    assert (status_panel.DETAIL_TOPIC, status_panel.detail_target(second.pk)) in sent
    sent.clear()
    third = make_server("c-third")  # a new row: the whole table again
    status_panel.publish_servers([third.pk])
    assert (status_panel.TOPIC, status_panel.ROWS_TARGET) in sent
