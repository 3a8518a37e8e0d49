from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from comfyweb import health_panel, live
from comfyweb.asgi import application
from comfyweb.consumers import CLOSE_UNAUTHENTICATED
from tasks.models import Status
from tests.factories import make_task, make_user, shared_workflow
from tests.live_socket import connected_as

pytestmark = pytest.mark.django_db(transaction=True)
ORIGIN = [(b"origin", b"http://localhost"), (b"host", b"localhost")]


async def test_anonymous_socket_is_refused():
    communicator = WebsocketCommunicator(application, "/ws/live/", headers=ORIGIN)
    connected, code = await communicator.connect()
    assert not connected
    assert code == CLOSE_UNAUTHENTICATED


async def test_socket_from_a_foreign_origin_is_refused():
    headers = [(b"origin", b"http://evil.example"), (b"host", b"localhost")]
    communicator = WebsocketCommunicator(application, "/ws/live/", headers=headers)
    connected, _ = await communicator.connect()
    assert not connected


async def test_subscriber_gets_a_snapshot_then_published_fragments():
    user = await database_sync_to_async(make_user)()
    communicator = await connected_as(user)
    await communicator.send_json_to({"action": "subscribe", "topic": "health"})
    assert await communicator.receive_json_from(timeout=5) == {
        "type": "subscribed",
        "topic": "health",
        "key": None,
    }
    snapshot = await communicator.receive_json_from(timeout=5)
    assert snapshot["target"] == health_panel.TARGET
    assert 'id="health-panel"' in snapshot["html"]

    # Published through the real Redis channel layer, as a worker would.
    await live.apublish_fragment("health", "health-panel", "<section id='health-panel'>x</section>")
    update = await communicator.receive_json_from(timeout=5)
    assert update == live.fragment(
        "health", "health-panel", "<section id='health-panel'>x</section>"
    )
    await communicator.disconnect()


async def test_unknown_topic_and_bad_messages_get_an_error_not_a_crash():
    user = await database_sync_to_async(make_user)()
    communicator = await connected_as(user)
    await communicator.send_json_to({"action": "subscribe", "topic": "no-such-topic"})
    assert (await communicator.receive_json_from(timeout=5))["type"] == "error"
    await communicator.send_json_to(["not", "an", "object"])
    assert (await communicator.receive_json_from(timeout=5))["type"] == "error"
    await communicator.send_json_to({"action": "subscribe", "topic": "health", "key": "../x"})
    assert (await communicator.receive_json_from(timeout=5))["type"] == "error"
    await communicator.disconnect()


async def test_deactivated_user_stops_receiving_events():
    user = await database_sync_to_async(make_user)()
    communicator = await connected_as(user)
    await communicator.send_json_to({"action": "subscribe", "topic": "health"})
    await communicator.receive_json_from(timeout=5)  # subscribed
    await communicator.receive_json_from(timeout=5)  # snapshot

    user.is_active = False
    await database_sync_to_async(user.save)()
    await live.apublish_fragment("health", "health-panel", "<section id='health-panel'></section>")
    assert await communicator.receive_nothing(timeout=1)
    await communicator.disconnect()


async def test_staff_taken_away_stops_the_events_of_other_teams():
    """Staff follow every team's tasks; once no longer staff, an open socket stops too
    (the socket's user was read at connect: the flag is read again per event)."""
    staff, task = await database_sync_to_async(
        lambda: (
            make_user(staff=True),
            make_task(
                graph=shared_workflow("empty_save"),
                status=Status.DISPATCHED,
                dispatched_at=timezone.now(),
            ),
        )
    )()
    communicator = await connected_as(staff)
    await communicator.send_json_to({"action": "subscribe", "topic": "task", "key": str(task.pk)})
    assert (await communicator.receive_json_from(timeout=5))["type"] == "subscribed"
    while not await communicator.receive_nothing(timeout=0.2):  # the snapshot
        await communicator.receive_json_from(timeout=5)
    await live.apublish_fragment("task", "t", "<p>1</p>", key=str(task.pk))
    assert (await communicator.receive_json_from(timeout=5))["html"] == "<p>1</p>"

    demote = type(staff).objects.filter(pk=staff.pk).update
    await database_sync_to_async(demote)(is_staff=False)
    await live.apublish_fragment("task", "t", "<p>2</p>", key=str(task.pk))
    assert await communicator.receive_nothing(timeout=1)
    await communicator.disconnect()
