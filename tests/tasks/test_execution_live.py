"""Execution reaches browsers: the task's page and its team's list, and nobody else (A6, D3)."""

from __future__ import annotations

import pathlib

import pytest
from asgiref.sync import sync_to_async

from tasks.execution import TaskEventHandler
from tasks.models import Task
from tests.factories import make_server, make_task, make_team, make_user
from tests.live_socket import connected_as
from tests.monitoring import simulator
from tests.tasks.test_execution import run_task, slow_graph

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("sync_jobs")]


async def subscribe(communicator, topic: str, key) -> dict:
    """The answer to subscribing; the snapshot that follows it is left queued."""
    await communicator.send_json_to({"action": "subscribe", "topic": topic, "key": str(key)})
    return await communicator.receive_json_from(timeout=5)


async def drain(communicator) -> list[dict]:
    messages = []
    while not await communicator.receive_nothing(timeout=0.3):
        messages.append(await communicator.receive_json_from(timeout=5))
    return messages


async def test_a_run_is_pushed_to_the_task_page_and_the_team_list_only(tmp_path: pathlib.Path):
    def build():
        team, other = make_team(), make_team()
        return team, make_user(team=team), make_user(team=other), other

    team, member, outsider, other_team = await sync_to_async(build)()
    async with simulator(tmp_path / "comfyui") as sim:

        def dispatched() -> Task:
            task = make_task(
                team, dispatched_to=make_server(base_url=sim.base_url), graph=slow_graph(steps=40)
            )
            return Task.objects.select_related("server").get(pk=task.pk)

        task = await sync_to_async(dispatched)()
        watcher = await connected_as(member)
        assert (await subscribe(watcher, "task", task.pk))["type"] == "subscribed"
        snapshot = await drain(watcher)
        assert {m["target"] for m in snapshot} >= {f"task-{task.pk}-status"}
        assert (await subscribe(watcher, "team-tasks", team.pk))["type"] == "subscribed"

        stranger = await connected_as(outsider)
        assert (await subscribe(stranger, "task", task.pk))["type"] == "error"
        assert (await subscribe(stranger, "team-tasks", team.pk))["type"] == "error"
        assert (await subscribe(stranger, "team-tasks", other_team.pk))["type"] == "subscribed"

        await run_task(sim, task, TaskEventHandler())

    messages = await drain(watcher)
    typed = [m for m in messages if m["type"] == "data.update"]
    messages = [m for m in messages if m["type"] == "fragment.update"]
    targets = [m["target"] for m in messages]
    assert f"task-{task.pk}-progress" in targets
    assert f"task-row-{task.pk}-state" in targets
    statuses = [m["html"] for m in messages if m["target"] == f"task-{task.pk}-status"]
    assert "Running" in statuses[0]
    assert "Completed" in statuses[-1]
    outputs = [m["html"] for m in messages if m["target"] == f"task-{task.pk}-outputs"]
    assert "/thumbnail/" in outputs[-1]
    progress = [m["html"] for m in messages if m["target"] == f"task-{task.pk}-progress"]
    assert any("SlowProgress" in html for html in progress)
    # Beside the HTML, the same socket carries the typed JSON the API streams.
    assert {m["event"] for m in typed} == {"status", "progress"}
    assert typed[-1]["data"]["status"] == "completed"
    assert typed[-1]["data"]["progress"]["percent"] == 100

    assert await stranger.receive_nothing(timeout=0.3)
    await watcher.disconnect()
    await stranger.disconnect()
