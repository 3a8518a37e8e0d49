"""Every display of a running task says the same thing about its progress (issue #10):
the task page, its row in the list, the API and the socket's pushes all derive
percent and "step x/y" from one definition, and say which is which.

The numbers are those of the report: a 3-node graph whose first node is done
and whose sampler is at step 38 of 150. Overall that is (1 + 38/150) / 3 = 41.8 %,
which the page used to show as "42%" beside a bare "step 38/150".
"""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from api.tokens import issue_token
from comfyweb.consumers import LiveConsumer
from tasks.execution import TaskEventHandler
from tasks.models import Status, Task
from tests.clocks import FakeClock
from tests.factories import make_server, make_task, make_team, make_user, shared_workflow
from tests.monitoring import sample_up_to

pytestmark = pytest.mark.django_db(transaction=True)

SAID = "node 2 of 3 · step 38/150 · 41 % overall"


def sampler_graph() -> dict:
    graph = shared_workflow("slow_progress")  # EmptyImage → SlowProgress → SaveImage
    graph["2"]["inputs"]["steps"] = 150
    return graph


def displays(user, task_id: int) -> dict[str, str]:
    """What the task page, the list and the API say of the task."""
    client = Client()
    client.force_login(user)
    token = issue_token(user, "tests")[1]
    api = client.get(f"/api/v1/tasks/{task_id}", HTTP_AUTHORIZATION=f"Bearer {token}").json()
    return {
        "page": client.get(f"/tasks/{task_id}/").content.decode(),
        "list": client.get("/tasks/").content.decode(),
        "api": api["progress"]["summary"],
        "api percent": str(api["progress"]["percent"]),
    }


async def subscribed(user, topic: str, key: int) -> WebsocketCommunicator:
    socket = WebsocketCommunicator(LiveConsumer.as_asgi(), "/ws/live/")
    socket.scope["user"] = user
    assert (await socket.connect())[0]
    await socket.send_json_to({"action": "subscribe", "topic": topic, "key": str(key)})
    assert (await socket.receive_json_from(timeout=5))["type"] == "subscribed"
    return socket


async def fragment_saying(socket: WebsocketCommunicator, target: str, text: str) -> str:
    """The first push of `target` that says `text`: earlier pushes (lower steps) are
    read past, however slowly they come; none saying it within the timeout fails."""
    while True:
        message = await socket.receive_json_from(timeout=10)
        if message.get("target") == target and text in message["html"]:
            return message["html"]


async def test_page_list_api_and_socket_say_the_same_node_step_and_percent_mid_run():
    def build():
        team = make_team()
        return make_user(team=team), make_task(
            team, dispatched_to=make_server(), graph=sampler_graph()
        )

    user, task = await sync_to_async(build)()
    page_socket = await subscribed(user, "task", task.pk)
    list_socket = await subscribed(user, "team-tasks", task.team_id)
    handler = TaskEventHandler(clock=FakeClock(), browser_interval=0, database_interval=3600)
    await sample_up_to(handler, task, 38, 150)

    pushed_bar = await fragment_saying(page_socket, f"task-{task.pk}-progress", SAID)
    pushed_row = await fragment_saying(list_socket, f"task-row-{task.pk}-state", SAID)
    shown = await sync_to_async(displays)(user, task.pk)
    for html in (pushed_bar, pushed_row, shown["page"], shown["list"]):
        assert SAID in html
        assert 'value="41"' in html  # the bar
    assert shown["api"] == SAID
    assert shown["api percent"] == "41"

    await handler.flush()
    await page_socket.disconnect()
    await list_socket.disconnect()


def test_a_page_load_from_the_stored_row_says_what_the_socket_said(client):
    # No live snapshot (the monitor is gone, or it expired): the row alone.
    team = make_team()
    user = make_user(team=team)
    task = make_task(
        team,
        dispatched_to=make_server(),
        status=Status.RUNNING,
        graph=sampler_graph(),
        progress_node="2",
        progress_node_type="SlowProgress",
        progress_value=38,
        progress_max=150,
        progress_nodes_done=1,
        progress_fraction=(1 + 38 / 150) / 3,
    )
    shown = displays(user, task.pk)
    assert SAID in shown["page"]
    assert SAID in shown["list"]
    assert shown["api"] == SAID
    assert "42" not in shown["api percent"]


def test_a_completed_task_is_100_percent_everywhere():
    team = make_team()
    user = make_user(team=team)
    task = make_task(
        team, dispatched_to=make_server(), status=Status.COMPLETED, graph=sampler_graph()
    )
    Task.objects.filter(pk=task.pk).update(progress_fraction=1.0, progress_nodes_done=3)
    shown = displays(user, task.pk)
    assert shown["api"] == "100 % overall"
    assert 'value="100"' in shown["page"]
    assert 'value="100"' in shown["list"]
