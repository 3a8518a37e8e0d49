"""Open usage pages hear of a team's new usage at once; other teams' users cannot listen."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from accounting.server_clock import note_server_run
from tasks.models import Status, Task
from tasks.transitions import transition
from tests.factories import make_server, make_task, make_team, make_user
from tests.live_socket import connected_as

pytestmark = pytest.mark.django_db(transaction=True)


def ran_and_failed(team) -> None:
    task = make_task(team, dispatched_to=make_server())
    transition(task.pk, Status.DISPATCHED, Status.RUNNING, message="started")
    note_server_run(task.pk, 0, 2_000)
    transition(task.pk, Status.RUNNING, Status.FAILED, message="node raised")
    assert Task.objects.get(pk=task.pk).usage.count() == 1


async def test_a_members_usage_page_gets_a_refresh_hint_when_an_attempt_is_billed():
    team = await sync_to_async(make_team)()
    communicator = await connected_as(await sync_to_async(make_user)(team=team))
    await communicator.send_json_to(
        {"action": "subscribe", "topic": "team-usage", "key": str(team.pk)}
    )
    assert (await communicator.receive_json_from(timeout=5))["type"] == "subscribed"

    await sync_to_async(ran_and_failed)(team)
    hint = await communicator.receive_json_from(timeout=5)
    assert hint["type"] == "fragment.refresh"
    assert hint["target"] == "usage-report"
    assert hint["key"] == str(team.pk)
    await communicator.disconnect()


async def test_another_teams_user_cannot_subscribe_to_its_usage():
    team = await sync_to_async(make_team)()
    outsider = await sync_to_async(make_user)(team=await sync_to_async(make_team)())
    communicator = await connected_as(outsider)
    await communicator.send_json_to(
        {"action": "subscribe", "topic": "team-usage", "key": str(team.pk)}
    )
    assert (await communicator.receive_json_from(timeout=5))["type"] == "error"
    await communicator.disconnect()
