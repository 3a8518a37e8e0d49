"""Monitors split the fleet by lease (issue 17): each server watched by exactly one
monitor at a time, fair shares, a joining monitor takes its share, and the servers of
one that stops or dies are taken over."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from servers.models import Server, ServerLease
from servers.monitor import heartbeat
from servers.monitor.leases import Leases, fair_share
from tests.factories import make_server
from tests.monitoring import wait_until
from tests.servers.monitor.conftest import RecordingHandler

pytestmark = pytest.mark.django_db(transaction=True)

LEASE_SECONDS = 1.5


@pytest.fixture
def forget_beats():
    yield
    for monitor_id in ("monitor-7", "monitor-8", "monitor-9"):
        heartbeat.remove_beat(monitor_id)


def holders() -> dict[int, str]:
    """Server id -> the monitor whose lease on it is live."""
    now = timezone.now()
    return dict(
        ServerLease.objects.filter(expires_at__gt=now)
        .exclude(monitor_id="")
        .values_list("server_id", "monitor_id")
    )


def split_between(*monitors) -> bool:
    """Every server leased, each watched by its holder and by nobody else."""
    leased = holders()
    if len(leased) != Server.objects.count():
        return False
    for running in monitors:
        mine = {sid for sid, holder in leased.items() if holder == running.monitor.monitor_id}
        if set(running.monitor.watchers) != mine:
            return False
    return True


async def test_two_monitors_split_the_fleet_into_fair_shares(
    start_comfyui_sims, sim_server, start_monitor
):
    sims = await start_comfyui_sims(4)
    servers = [await sim_server(sim) for sim in sims]
    first = await start_monitor()
    await wait_until(lambda: len(first.monitor.watchers) == 4, what="the first watching all")

    # A second joins: the first gives back what is above its share, the second takes it.
    second = await start_monitor()
    await wait_until(
        lambda: (
            split_between(first, second)
            and len(first.monitor.watchers) == len(second.monitor.watchers) == 2
        ),
        what="two of four servers each",
    )
    assert not set(first.monitor.watchers) & set(second.monitor.watchers)
    # Each watches with its own client id; the server's base is in both.
    for server in servers:
        watcher = (first.monitor.watchers | second.monitor.watchers)[server.pk]
        base = await database_sync_to_async(lambda s=server: s.client_id)()
        assert watcher.spec.client_id.startswith(f"{base}-")
    ids = {w.spec.client_id.rsplit("-", 1)[1] for w in first.monitor.watchers.values()}
    others = {w.spec.client_id.rsplit("-", 1)[1] for w in second.monitor.watchers.values()}
    assert len(ids) == len(others) == 1
    assert ids != others


async def test_the_servers_of_a_monitor_that_dies_are_taken_over(
    start_comfyui_sims, sim_server, start_monitor
):
    sims = await start_comfyui_sims(4)
    for sim in sims:
        await sim_server(sim)
    first = await start_monitor(lease_seconds=LEASE_SECONDS)
    second = await start_monitor(lease_seconds=LEASE_SECONDS)
    await wait_until(
        lambda: split_between(first, second) and first.monitor.watchers and second.monitor.watchers,
        what="the fleet split between both",
    )
    lost = set(first.monitor.watchers)

    # It dies: nothing given back, its leases only expire.
    first.monitor.leases.release = lambda: None
    await first.close()
    assert await database_sync_to_async(lambda: set(holders()) >= lost)()

    await wait_until(
        lambda: set(second.monitor.watchers) == {s.pk for s in Server.objects.all()},
        what="the survivor watching every server",
    )
    for server_id in lost:
        watcher = second.monitor.watchers[server_id]
        await wait_until(lambda w=watcher: w.stream_stats.connected, what="its stream open")
    assert await database_sync_to_async(split_between)(second)


async def test_a_monitor_that_stops_gives_its_servers_back_at_once(
    start_comfyui_sims, sim_server, start_monitor
):
    sims = await start_comfyui_sims(2)
    for sim in sims:
        await sim_server(sim)
    # Leases that would outlive the test: only giving them back lets the other take them.
    first = await start_monitor(lease_seconds=600)
    second = await start_monitor(lease_seconds=600)
    await wait_until(
        lambda: split_between(first, second) and first.monitor.watchers and second.monitor.watchers,
        what="the fleet split between both",
    )
    await first.close()
    await wait_until(lambda: len(second.monitor.watchers) == 2, what="the other taking them")


class StuckTick(RecordingHandler):
    """Work hooks whose periodic work hangs, once armed, until released."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.stuck = asyncio.Event()
        self.release = asyncio.Event()

    async def tick(self) -> None:
        if self.armed:
            self.stuck.set()
            await self.release.wait()


async def test_a_monitor_whose_tick_hangs_keeps_its_leases_and_heartbeat(
    start_comfyui_sims, sim_server, start_monitor
):
    sims = await start_comfyui_sims(2)
    for sim in sims:
        await sim_server(sim)
    handler = StuckTick()
    running = await start_monitor(lease_seconds=LEASE_SECONDS, handler=handler)
    monitor_id = running.monitor.monitor_id
    await wait_until(lambda: len(running.monitor.watchers) == 2, what="both servers watched")

    handler.armed = True
    await asyncio.wait_for(handler.stuck.wait(), 30)
    stuck_at = timezone.now()

    # Renewed after a whole lease went by with the tick hung: without the keep-alive
    # the leases would have lapsed by then.
    def renewed_past_a_lease() -> bool:
        leases = ServerLease.objects.filter(monitor_id=monitor_id)
        beyond = stuck_at + timedelta(seconds=2 * LEASE_SECONDS)
        return leases.count() == 2 and not leases.filter(expires_at__lte=beyond).exists()

    await wait_until(renewed_past_a_lease, what="leases renewed while the tick hangs")
    beats = await database_sync_to_async(heartbeat.read_heartbeats)()
    (beat,) = [beat for beat in beats if beat["id"] == monitor_id]
    assert beat["at"] > stuck_at.timestamp() + LEASE_SECONDS
    # Another monitor finds nothing free to take.
    rival = Leases("host-9-rival", LEASE_SECONDS)
    assert await database_sync_to_async(rival.step)(None) == frozenset()
    handler.release.set()


def test_of_monitors_taking_at_once_each_server_goes_to_one():
    servers = {make_server().pk for _ in range(10)}
    one, other = Leases("host-1-aaaaaa", 60), Leases("host-2-bbbbbb", 60)
    peers = {one.monitor_id: 0, other.monitor_id: 0}
    # One after the other: each its share, never one of the other's.
    first_held = one.step(peers)
    second_held = other.step(peers)
    assert len(first_held) == fair_share(10, 2) == 5
    assert first_held.isdisjoint(second_held)
    assert first_held | second_held == servers
    # Renewing keeps them where they are.
    assert one.step(peers) == first_held
    assert other.step(peers) == second_held


def test_a_disabled_server_goes_back_and_a_new_one_is_taken():
    first, second = make_server(), make_server()
    leases = Leases("host-1-aaaaaa", 60)
    assert leases.step(None) == {first.pk, second.pk}
    Server.objects.filter(pk=first.pk).update(enabled=False)
    added = make_server()
    assert leases.step(None) == {second.pk, added.pk}
    assert ServerLease.objects.get(server=first).monitor_id == ""


def test_a_server_left_without_a_holder_is_taken_whatever_the_share():
    servers = [make_server() for _ in range(4)]
    # A monitor alive by its heartbeat holds none (it hangs): the share alone would
    # leave half the fleet unwatched.
    leases = Leases("host-1-aaaaaa", 60)
    hanging = {"host-9-ffffff": 0, leases.monitor_id: 0}
    long_ago = timezone.now() - timedelta(seconds=120)
    ServerLease.objects.bulk_create(
        [ServerLease(server=s, monitor_id="host-8-dead00", expires_at=long_ago) for s in servers]
    )
    assert leases.step(hanging) == {s.pk for s in servers}


def test_a_monitor_restarted_under_its_configured_id_holds_its_servers_at_once():
    servers = {make_server().pk for _ in range(3)}
    before = Leases("monitor-1", 600)
    assert before.step(None) == servers
    # Killed: nothing given back. Started again under the same id, it renews them
    # rather than waiting ten minutes for them to expire.
    after = Leases("monitor-1", 600)
    assert after.step(None) == servers


def beat_of_another_process(monitor_id: str, at: float) -> dict:
    return {"id": monitor_id, "pid": -1, "host": "elsewhere", "at": at, "expires": at + 3}


def test_a_configured_id_that_another_live_monitor_beats_under_is_refused(forget_beats):
    heartbeat.store_beat(beat_of_another_process("monitor-7", time.time()))

    def it_beats_again(seconds: float) -> None:
        heartbeat.store_beat(beat_of_another_process("monitor-7", time.time() + 0.5))

    with pytest.raises(heartbeat.MonitorIdInUse, match="monitor-7"):
        heartbeat.ensure_id_unused("monitor-7", pause=it_beats_again)


def test_a_configured_id_whose_last_holder_died_is_taken(forget_beats):
    heartbeat.store_beat(beat_of_another_process("monitor-8", time.time()))
    waited = []
    heartbeat.ensure_id_unused("monitor-8", pause=waited.append)  # it beats no more
    assert waited  # it was given the time to
    heartbeat.ensure_id_unused("monitor-9", pause=waited.append)  # nobody had it
    assert len(waited) == 1


def test_a_configured_id_whose_holder_on_this_host_is_gone_is_taken_without_waiting(
    forget_beats,
):
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead_pid = int(finished.stdout)
    beat = heartbeat.beat_value("monitor-9", servers=1, interval=2) | {"pid": dead_pid}
    heartbeat.store_beat(beat)
    waited = []
    heartbeat.ensure_id_unused("monitor-9", pause=waited.append)
    assert waited == []
