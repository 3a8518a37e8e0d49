"""Several web processes on one Redis: a live update reaches every browser exactly once,
whichever daphne holds its socket (issue 17, item 3).

Two real daphne processes share the test's PostgreSQL and one Redis database; a
signed-in browser (the `websockets` library with a session cookie, as a browser
sends it) holds a live socket on each, subscribed to one task's detail topic
and its team's task list. A third process, standing in for a worker, publishes
the task's state through `tasks.task_updates.publish_task` and then an end
marker on the same group: Redis keeps a group's messages in order, so each
socket has seen everything the publish sent (and any duplicate of it) once the
marker arrives, without waiting on a clock.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

from tasks.task_updates import (
    PARTS,
    STATUS_EVENT,
    TASK_TOPIC,
    TEAM_TOPIC,
    row_target,
    target,
)
from tests.django_process import DjangoProcess, shared_database
from tests.factories import make_task, make_team, make_user
from tests.scaleout.processes import (
    WebProcess,
    flushed_redis_db,
    redis_db_url,
    session_cookie,
    web_process,
)

pytestmark = [pytest.mark.slow, shared_database, pytest.mark.django_db(transaction=True)]

REDIS_DB = 11
END_EVENT = "test.end"
MESSAGE_BOUND = 60.0  # seconds to wait for a socket's next message (a bound, not a goal)
# A worker's publish of one task's state, then the end marker (argv: task id).
_PUBLISH = """
import sys
from comfyweb import live
from tasks.task_updates import TASK_TOPIC, publish_task
task_id = sys.argv[1]
publish_task(int(task_id))
live.publish_data(TASK_TOPIC, "test.end", {}, key=task_id)
print("published", flush=True)
"""


async def next_message(socket) -> dict:
    return json.loads(await asyncio.wait_for(socket.recv(), timeout=MESSAGE_BOUND))


async def subscribed_socket(web: WebProcess, cookie: str, groups: list[tuple[str, str]]):
    """A browser's live socket on one web process, subscribed to `groups` (topic, key),
    with every subscription's snapshot read."""
    socket = await websockets.connect(
        web.ws_url, origin=web.url.rstrip("/"), additional_headers={"Cookie": cookie}
    )
    for topic, key in groups:
        await socket.send(json.dumps({"action": "subscribe", "topic": topic, "key": key}))
    # The consumer answers in order: this error comes after the last snapshot.
    await socket.send(json.dumps({"action": "snapshot-done?"}))
    subscribed = []
    while True:
        message = await next_message(socket)
        if message["type"] == "subscribed":
            subscribed.append((message["topic"], message["key"]))
        if message["type"] == "error":
            break
    assert subscribed == groups, subscribed
    return socket


async def received_until_end(socket) -> list[tuple[str, str, str]]:
    """(type, topic, target or event) of every message up to the end marker."""
    seen = []
    while True:
        message = await next_message(socket)
        if message.get("event") == END_EVENT:
            return seen
        seen.append(
            (message["type"], message["topic"], message.get("target", message.get("event")))
        )


def test_a_published_change_reaches_a_browser_on_each_web_process_exactly_once():
    flushed_redis_db(REDIS_DB)
    team = make_team()
    user = make_user(team=team)
    task = make_task(team)
    cookie = session_cookie(user)
    groups = [(TASK_TOPIC, str(task.pk)), (TEAM_TOPIC, str(team.pk))]
    webs = [web_process(REDIS_DB) for _ in range(2)]
    try:

        async def scenario():
            sockets = [await subscribed_socket(web, cookie, groups) for web in webs]
            publisher = DjangoProcess.python(
                _PUBLISH, str(task.pk), REDIS_URL=redis_db_url(REDIS_DB)
            )
            try:
                received = [await received_until_end(socket) for socket in sockets]
                await asyncio.to_thread(publisher.wait_for_line, "published")
            finally:
                publisher.stop()
                for socket in sockets:
                    await socket.close()
            return received

        received = asyncio.run(scenario())
    finally:
        for web in webs:
            web.stop()
    expected = sorted(
        [("fragment.update", TASK_TOPIC, target(task.pk, part)) for part in PARTS]
        + [("data.update", TASK_TOPIC, STATUS_EVENT)]
        + [("fragment.update", TEAM_TOPIC, row_target(task.pk))]
    )
    for messages in received:
        assert sorted(messages) == expected
