"""Publishers ask whether anyone listens before rendering: nobody, nothing sent.

A task's state change renders five fragments from four queries; most tasks have
no page open. What is skipped is never lost: a socket that subscribes later reads
the topic's snapshot after joining.
"""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async

from comfyweb import live
from tasks import batch_updates, pictures, task_updates
from tasks.models import Status, Task
from tests.factories import make_task
from tests.private_redis import redis_down

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_topic_is_watched_exactly_while_someone_listens_to_it():
    assert await live.awatched(("task", "4242"), ("task", "4243")) == [False, False]
    async with live.listen("task", "4242"):
        assert await live.awatched(("task", "4242"), ("task", "4243")) == [True, False]
    assert await live.awatched(("task", "4242")) == [False]


def test_when_redis_cannot_answer_every_topic_counts_as_watched():
    with redis_down():
        assert live.watched(("task", "1"), ("tasks", "2")) == [True, True]


def test_a_state_change_of_a_task_nobody_watches_is_one_query_and_no_rendering(
    django_assert_num_queries,
):
    task = make_task(status=Status.RUNNING)
    with django_assert_num_queries(1):  # loading the task, nothing of its context
        task_updates.publish_task(task.pk)


def test_a_state_change_nobody_watches_reads_nothing_to_publish_it(
    django_assert_num_queries,
):
    task = make_task(status=Status.RUNNING)
    with django_assert_num_queries(0):  # the announcement names the team and batch
        task_updates.on_task_transitioned(
            Task, task_id=task.pk, team_id=task.team_id, batch_id=None
        )
        pictures.on_task_transitioned(
            Task,
            task_id=task.pk,
            from_status=Status.RUNNING,
            to_status=Status.COMPLETED,
            team_id=task.team_id,
            batch_id=None,
        )
        batch_updates.on_task_transitioned(Task, task_id=task.pk, batch_id=None)


async def test_a_watched_task_gets_its_fragments_and_status_after_a_state_change():
    task = await database_sync_to_async(make_task)(status=Status.RUNNING)
    async with live.listen(task_updates.TASK_TOPIC, str(task.pk)) as listener:
        await database_sync_to_async(task_updates.publish_task)(task.pk)
        received = []
        async with asyncio.timeout(10):
            while not received or received[-1]["type"] != "data.update":
                received.append(await listener.receive())
    targets = {m["target"] for m in received if m["type"] == "fragment.update"}
    assert targets == {task_updates.target(task.pk, part) for part in task_updates.PARTS}
    assert received[-1]["event"] == task_updates.STATUS_EVENT


def progress_of(task: Task, value: int) -> task_updates.ProgressView:
    view = task_updates.progress_view_from_task(task)
    return view | {"value": value, "max": 100}


async def test_progress_nobody_listens_to_is_neither_pushed_nor_kept():
    task = await database_sync_to_async(make_task)(status=Status.RUNNING, prompt_id="p-1")
    await task_updates.apublish_progress(progress_of(task, 40))
    assert await database_sync_to_async(task_updates.live_progress)([task]) == {}


async def test_progress_pushed_to_a_listener_is_kept_for_the_api_first():
    task = await database_sync_to_async(make_task)(status=Status.RUNNING, prompt_id="p-2")
    async with live.listen(task_updates.TEAM_TOPIC, str(task.team_id)) as listener:
        await task_updates.apublish_progress(progress_of(task, 40))
        async with asyncio.timeout(10):
            pushed = await listener.receive()
        # Whoever heard the push and asks the API now sees at least those numbers.
        kept = await database_sync_to_async(task_updates.live_progress)([task])
    assert pushed["target"] == task_updates.row_target(task.pk)
    assert kept[task.pk]["value"] == 40
