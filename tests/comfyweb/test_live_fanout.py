"""The live socket's fan-out: one channel per group and process, checked per event.

Every socket of a process subscribed to a topic shares one channel-layer channel
(`comfyweb.consumers.Fanout`); these tests publish through the real Redis channel
layer, as the worker and the monitor do, to many sockets at once.
"""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from comfyweb import live
from comfyweb.consumers import Fanout
from tasks import task_updates
from teams.models import Membership
from tests.factories import make_team, make_user
from tests.live_socket import connected_as

pytestmark = pytest.mark.django_db(transaction=True)
SOCKETS = 12


async def subscribed(user, topic: str, key: str | None = None):
    """`user`'s socket, subscribed to `topic`/`key`, its snapshot read."""
    socket = await connected_as(user)
    await socket.send_json_to({"action": "subscribe", "topic": topic, "key": key})
    assert (await socket.receive_json_from(timeout=5))["type"] == "subscribed"
    while not await socket.receive_nothing(timeout=0.2):
        await socket.receive_json_from(timeout=5)
    return socket


async def everything(socket) -> list[dict]:
    """What `socket` has received, until nothing more comes."""
    got = []
    while not await socket.receive_nothing(timeout=0.3):
        got.append(await socket.receive_json_from(timeout=5))
    return got


async def test_a_message_published_once_reaches_every_subscribed_socket_exactly_once():
    users = await database_sync_to_async(lambda: [make_user() for _ in range(SOCKETS // 2)])()
    # Two sockets per user, as two open tabs: each tab gets its own copy.
    sockets = [await subscribed(user, "health") for user in users for _ in range(2)]
    htmls = [f"<section id='health-panel'>{n}</section>" for n in range(3)]
    for html in htmls:
        await live.apublish_fragment("health", "health-panel", html)

    for socket in sockets:
        assert [m["html"] for m in await everything(socket)] == htmls
    for socket in sockets:
        await socket.disconnect()


async def test_a_member_never_receives_another_teams_topic_under_load():
    def world():
        teams = [make_team(), make_team()]
        return teams, [make_user(team=team) for team in teams for _ in range(SOCKETS // 2)]

    teams, users = await database_sync_to_async(world)()
    by_team = {team.pk: [] for team in teams}
    for user in users:
        team_id = await database_sync_to_async(
            lambda user=user: Membership.objects.get(user=user).team_id
        )()
        by_team[team_id].append(await subscribed(user, task_updates.TEAM_TOPIC, str(team_id)))
    # A member asking for the other team's topic is refused, and gets none of it.
    first, second = (team.pk for team in teams)
    intruder = by_team[first][0]
    await intruder.send_json_to(
        {"action": "subscribe", "topic": task_updates.TEAM_TOPIC, "key": str(second)}
    )
    assert (await intruder.receive_json_from(timeout=5))["type"] == "error"

    async def publish(team_id: int, n: int) -> None:
        html = f"<tr id='row-{team_id}-{n}'></tr>"
        await live.apublish_fragment(task_updates.TEAM_TOPIC, "row", html, key=str(team_id))

    await asyncio.gather(*(publish(team.pk, n) for n in range(25) for team in teams))

    for team_id, sockets in by_team.items():
        for socket in sockets:
            got = await everything(socket)
            assert len(got) == 25
            assert {m["key"] for m in got} == {str(team_id)}
            assert all(m["html"].startswith(f"<tr id='row-{team_id}-") for m in got)
    for sockets in by_team.values():
        for socket in sockets:
            await socket.disconnect()


async def test_a_member_removed_from_the_team_stops_receiving_while_the_others_go_on():
    def world():
        team = make_team()
        return team, make_user(team=team), make_user(team=team)

    team, leaving, staying = await database_sync_to_async(world)()
    key = str(team.pk)
    gone = await subscribed(leaving, task_updates.TEAM_TOPIC, key)
    kept = await subscribed(staying, task_updates.TEAM_TOPIC, key)

    await database_sync_to_async(Membership.objects.filter(user=leaving).delete)()
    for n in range(3):
        await live.apublish_fragment(task_updates.TEAM_TOPIC, "row", f"<p>{n}</p>", key=key)

    assert await everything(gone) == []
    assert [m["html"] for m in await everything(kept)] == ["<p>0</p>", "<p>1</p>", "<p>2</p>"]
    await gone.disconnect()
    await kept.disconnect()


async def test_a_group_left_by_its_last_socket_is_joined_again_by_the_next():
    user = await database_sync_to_async(make_user)()
    group = live.group_name("health")
    first = await subscribed(user, "health")
    assert len(Fanout.current().members(group)) == 1
    await first.disconnect()
    assert Fanout.current().members(group) == frozenset()

    second = await subscribed(user, "health")
    await live.apublish_fragment("health", "health-panel", "<section id='health-panel'/>")
    assert [m["target"] for m in await everything(second)] == ["health-panel"]
    await second.disconnect()


async def test_an_idle_receive_outlasts_the_layers_blocking_pop():
    """The layer waits for a message with a blocking pop of `brpop_timeout` (5 s); a
    Redis client that stops reading as soon (redis-py's default) failed every idle
    receive, and with it the socket or event stream behind it."""
    layer = get_channel_layer()
    async with live.listen("health") as listener:
        with pytest.raises(TimeoutError):  # ours: not redis.exceptions.TimeoutError
            async with asyncio.timeout(layer.brpop_timeout + 1.5):
                await listener.receive()
