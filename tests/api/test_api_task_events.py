"""The API follows a task as live as the page does (issue #10): its answers carry what
the socket last pushed, and `GET /tasks/{id}/events` streams the socket's typed
payloads as Server-Sent Events through the ASGI application daphne serves."""

from __future__ import annotations

import json
import pathlib

import pytest
from asgiref.sync import sync_to_async
from channels.testing import ApplicationCommunicator, WebsocketCommunicator
from django.test import Client
from django.utils import timezone

from api.tokens import issue_token
from comfyweb.asgi import application
from comfyweb.consumers import LiveConsumer
from servers.comfyui import ExecutionStart
from tasks.execution import TaskEventHandler
from tasks.models import Status, Task
from tasks.transitions import transition
from teams.models import Membership
from tests.clocks import FakeClock
from tests.factories import make_server, make_task, make_team, make_user, shared_workflow
from tests.monitoring import sample_up_to, simulator
from tests.private_redis import redis_down
from tests.tasks.test_execution import run_task, slow_graph

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("sync_jobs")]


def member_with_token(team=None):
    user = make_user(team=team or make_team())
    return user, issue_token(user, "tests")[1]


async def api_get(token: str, path: str, **query) -> dict:
    response = await sync_to_async(Client().get)(
        f"/api/v1/{path}", query, HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert response.status_code == 200, response.content
    return response.json()


async def socket_on_task(user, task_id: int) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(LiveConsumer.as_asgi(), "/ws/live/")
    communicator.scope["user"] = user
    assert (await communicator.connect())[0]
    await communicator.send_json_to({"action": "subscribe", "topic": "task", "key": str(task_id)})
    assert (await communicator.receive_json_from(timeout=5))["type"] == "subscribed"
    while not await communicator.receive_nothing(timeout=0.2):  # the snapshot
        await communicator.receive_json_from(timeout=5)
    return communicator


async def test_the_api_answers_the_progress_the_socket_just_pushed_not_the_throttled_row():
    def build():
        user, token = member_with_token()
        task = make_task(
            user.memberships.get().team, dispatched_to=make_server(), graph=slow_graph()
        )
        return user, token, task

    user, token, task = await sync_to_async(build)()
    socket = await socket_on_task(user, task.pk)
    # Every change goes to browsers at once; the database is written once, then not
    # again for an hour (the test ends long before).
    handler = TaskEventHandler(clock=FakeClock(), browser_interval=0, database_interval=3600)
    await sample_up_to(handler, task, 38, 150)

    # Read past the pushes of earlier steps, however slowly they come, to step 38's.
    while True:
        message = await socket.receive_json_from(timeout=10)
        if message.get("target") == f"task-{task.pk}-progress" and "38/150" in message["html"]:
            pushed = message["html"]
            break
    row = await Task.objects.aget(pk=task.pk)
    assert (row.progress_node, row.progress_value) == ("1", 0)  # the row is behind

    detail = (await api_get(token, f"tasks/{task.pk}"))["progress"]
    listed = (await api_get(token, "tasks"))["items"][0]["progress"]
    assert (detail["node"], detail["value"], detail["max"]) == ("2", 38, 150)
    assert listed == detail
    assert detail["summary"] in pushed

    await handler.flush()
    await socket.disconnect()


# -- GET /tasks/{id}/events -------------------------------------------------------------


class EventStream:
    """One SSE request through the ASGI application (as daphne runs it)."""

    def __init__(self, path: str, token: str | None) -> None:
        headers = [(b"host", b"localhost")]
        if token:
            headers.append((b"authorization", f"Bearer {token}".encode()))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 40000),
            "server": ("localhost", 80),
        }
        self.app = ApplicationCommunicator(application, scope)
        self.buffer = ""
        self.ended = False
        self.comments = 0

    async def open(self) -> tuple[int, dict[str, str]]:
        await self.app.send_input({"type": "http.request", "body": b"", "more_body": False})
        start = await self.app.receive_output(timeout=10)
        assert start["type"] == "http.response.start"
        return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}

    async def body(self) -> bytes:
        """The whole body of a response that is not a stream."""
        chunks = []
        while True:
            message = await self.app.receive_output(timeout=10)
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                return b"".join(chunks)

    async def next_event(self, within: float = 30) -> tuple[str, dict] | None:
        """The next (event, data), or None once the response has ended."""
        while "\n\n" not in self.buffer:
            if self.ended:
                return None
            message = await self.app.receive_output(timeout=within)
            self.buffer += message.get("body", b"").decode()
            self.ended = not message.get("more_body", False)
        block, self.buffer = self.buffer.split("\n\n", 1)
        if block.startswith(":"):
            self.comments += 1
            return await self.next_event(within)
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        return fields["event"], json.loads(fields["data"])

    async def all_events(self, within: float = 30) -> list[tuple[str, dict]]:
        events = []
        while (event := await self.next_event(within)) is not None:
            events.append(event)
        return events

    async def close(self) -> None:
        if not self.ended:
            await self.app.send_input({"type": "http.disconnect"})
        await self.app.wait(timeout=10)


async def test_a_token_holder_follows_a_run_to_its_end_without_polling(tmp_path: pathlib.Path):
    async with simulator(tmp_path / "comfyui") as sim:

        def build():
            user, token = member_with_token()
            team = user.memberships.get().team
            task = make_task(
                # 1 s of steps (time scale 0.1): a loaded machine still shows some of them.
                team,
                dispatched_to=make_server(base_url=sim.base_url),
                graph=slow_graph(steps=20),
            )
            return token, Task.objects.select_related("server").get(pk=task.pk)

        token, task = await sync_to_async(build)()
        stream = EventStream(f"/api/v1/tasks/{task.pk}/events", token)
        status, headers = await stream.open()
        assert status == 200
        assert headers["Content-Type"] == "text/event-stream"
        assert headers["Cache-Control"] == "no-cache"
        first = await stream.next_event()
        assert first[0] == "status"
        assert (first[1]["task_id"], first[1]["status"], first[1]["finished"]) == (
            task.pk,
            "dispatched",
            False,
        )

        await run_task(sim, task, TaskEventHandler())
        events = await stream.all_events()
        await stream.close()

    statuses = [data["status"] for name, data in events if name == "status"]
    assert statuses == ["running", "completed"]
    assert events[-1][1]["finished"] is True
    assert events[-1][1]["progress"]["percent"] == 100
    steps = [data["progress"] for name, data in events if name == "progress"]
    assert any(p["max"] == 20 and p["node_type"] == "SlowProgress" for p in steps)
    percents = [p["percent"] for p in steps]
    assert percents == sorted(percents)
    # Its last word agrees with the API's.
    body = await api_get(token, f"tasks/{task.pk}")
    assert body["status"] == "completed"
    assert body["progress"] == events[-1][1]["progress"]


async def test_with_redis_down_the_stream_follows_the_task_from_the_database():
    def build():
        user, token = member_with_token()
        task = make_task(
            user.memberships.get().team,
            dispatched_to=make_server(),
            status=Status.RUNNING,
            graph=shared_workflow("empty_save"),
        )
        return token, task

    token, task = await sync_to_async(build)()
    with redis_down():
        stream = EventStream(f"/api/v1/tasks/{task.pk}/events", token)
        assert (await stream.open())[0] == 200
        first = await stream.next_event()
        assert (first[0], first[1]["status"]) == ("status", "running")
        await sync_to_async(transition)(
            task.pk, Status.RUNNING, Status.COMPLETED, message="done", progress_fraction=1.0
        )
        events = await stream.all_events()
        await stream.close()
    assert [(name, data["status"], data["finished"]) for name, data in events] == [
        ("status", "completed", True)
    ]


async def test_following_a_finished_task_sends_its_state_and_ends():
    def build():
        user, token = member_with_token()
        task = make_task(
            user.memberships.get().team,
            status=Status.COMPLETED,
            graph=shared_workflow("empty_save"),
        )
        return token, task

    token, task = await sync_to_async(build)()
    stream = EventStream(f"/api/v1/tasks/{task.pk}/events", token)
    assert (await stream.open())[0] == 200
    events = await stream.all_events()
    await stream.close()
    assert [(name, data["status"], data["finished"]) for name, data in events] == [
        ("status", "completed", True)
    ]


async def test_following_needs_credentials_and_is_a_404_for_another_teams_task():
    def build():
        owner, token = member_with_token()
        _, stranger_token = member_with_token()
        task = make_task(
            owner.memberships.get().team,
            graph=shared_workflow("empty_save"),
            status=Status.DISPATCHED,
            dispatched_at=timezone.now(),
        )
        return token, stranger_token, task

    token, stranger_token, task = await sync_to_async(build)()
    anonymous = EventStream(f"/api/v1/tasks/{task.pk}/events", None)
    assert (await anonymous.open())[0] == 401
    assert json.loads(await anonymous.body())["error"]["type"] == "not_authenticated"
    await anonymous.close()

    stranger = EventStream(f"/api/v1/tasks/{task.pk}/events", stranger_token)
    assert (await stranger.open())[0] == 404
    await stranger.body()
    await stranger.close()

    missing = EventStream(f"/api/v1/tasks/{task.pk + 1000}/events", token)
    assert (await missing.open())[0] == 404
    await missing.body()
    await missing.close()


@pytest.mark.parametrize("loses_access", ["removed from the team", "deleted"])
async def test_a_member_who_loses_access_hears_nothing_more(loses_access):
    def build():
        user, token = member_with_token()
        team = user.memberships.get().team
        return (
            user,
            token,
            make_task(team, dispatched_to=make_server(), graph=shared_workflow("slow_progress")),
        )

    user, token, task = await sync_to_async(build)()
    stream = EventStream(f"/api/v1/tasks/{task.pk}/events", token)
    assert (await stream.open())[0] == 200
    assert (await stream.next_event())[0] == "status"

    if loses_access == "deleted":
        await user.adelete()
    else:
        await Membership.objects.filter(user=user).adelete()
    handler = TaskEventHandler(browser_interval=0)
    await handler.handle(task.server_id, ExecutionStart(prompt_id=task.prompt_id))
    assert await stream.all_events(within=10) == []  # ended without telling anything
    await handler.flush()
    await stream.close()
