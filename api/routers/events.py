"""Follow a task live without polling (issue #10): Server-Sent Events.

`GET /api/v1/tasks/{id}/events` streams the typed JSON the task page's socket
gets beside its HTML (`tasks.task_updates.TaskData`, from the same channel-layer
group), one SSE event each:

    event: status
    data: {"task_id": 7, "status": "running", "finished": false, "server": "gpu-1",
           "progress": {"percent": 41, "summary": "node 2 of 3 · step 38/150 · 41 % overall", ...}}

It opens with the task's current state (a `status` event, live progress laid
over it), then sends `progress` (at most 10 a second) and `status` (a state
change) events as they are published, and ends after the `status` event of a
finished task. Every `KEEPALIVE` seconds without events it sends a comment (so
proxies keep the connection) after reading the task again: a missed final event
costs at most that long, and who may listen is checked then and before every
event, as the socket consumer does.

It is an async view streaming an async iterator: it needs the ASGI server
(daphne), where it holds no thread while it waits.

Live events are best effort: when the channel layer (Redis) cannot be reached,
or goes away mid-stream, the stream goes on from the database instead, reading
the task every `POLL` seconds (its row is at most a second behind) until it ends.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

from channels.db import database_sync_to_async
from django.core.exceptions import ObjectDoesNotExist
from django.http import Http404, StreamingHttpResponse
from ninja import Router

from api.errors import ERRORS
from api.schemas import PathId
from comfyweb import live
from tasks import task_updates
from tasks.models import Task

router = Router(tags=["tasks"])

KEEPALIVE = 15.0  # seconds
POLL = 1.0  # seconds between reads of the task when live events cannot be had

logger = logging.getLogger(__name__)
EVENT_STREAM = {
    "responses": {
        200: {
            "description": "`status` and `progress` events until the task finishes.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    }
}


@router.get(
    "/tasks/{task_id}/events",
    response=ERRORS,
    summary="Follow a task live (Server-Sent Events)",
    openapi_extra=EVENT_STREAM,
)
async def task_events(request, task_id: PathId) -> StreamingHttpResponse:
    """`event: status` / `event: progress` with the task as JSON, ending once it finishes.
    `curl -N -H "Authorization: Bearer $TOKEN" $API/tasks/7/events`"""
    user = request.auth
    if await database_sync_to_async(_current)(user, task_id) is None:
        raise Http404("No such task.")
    response = StreamingHttpResponse(_stream(user, task_id), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response


async def _stream(user, task_id: int) -> AsyncIterator[str]:
    try:
        async for event in _pushed(user, task_id):
            yield event
        return
    except Exception as error:  # the channel layer (Redis) is down or went away
        logger.warning(
            "live events of task %s unavailable (%s); following it from the database",
            task_id,
            type(error).__name__,
        )
    async for event in _polled(user, task_id):
        yield event


async def _polled(user, task_id: int) -> AsyncIterator[str]:
    """The task read from the database every POLL seconds: an event when it changed."""
    last: task_updates.TaskData | None = None
    while True:
        current = await database_sync_to_async(_current)(user, task_id, fresh=True)
        if current is None:
            return
        if current != last:
            moved = last is None or current["status"] != last["status"]
            yield _event(
                task_updates.STATUS_EVENT if moved else task_updates.PROGRESS_EVENT, current
            )
            last = current
        if current["finished"]:
            return
        await asyncio.sleep(POLL)


async def _pushed(user, task_id: int) -> AsyncIterator[str]:
    # Join the group first, then read the task: nothing published in between is lost
    # (it may arrive twice, which is harmless: each event is a whole state).
    async with live.listen(task_updates.TASK_TOPIC, str(task_id)) as listener:
        current = await database_sync_to_async(_current)(user, task_id)
        if current is None:
            return
        yield _event(task_updates.STATUS_EVENT, current)
        if current["finished"]:
            return
        while True:
            try:
                async with asyncio.timeout(KEEPALIVE):
                    message = await listener.receive()
            except TimeoutError:
                current = await database_sync_to_async(_current)(user, task_id, fresh=True)
                if current is None:
                    return
                if current["finished"]:  # its own event was missed
                    yield _event(task_updates.STATUS_EVENT, current)
                    return
                yield ": keep-alive\n\n"
                continue
            if message.get("type") != "data.update":
                continue  # the HTML fragments of the same group
            if not await database_sync_to_async(_allowed)(user, task_id, fresh=True):
                return
            yield _event(message["event"], message["data"])
            if message["event"] == task_updates.STATUS_EVENT and message["data"]["finished"]:
                return


def _event(name: str, data) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


def _allowed(user, task_id: int, *, fresh: bool = False) -> bool:
    if fresh:  # deactivated, deleted or removed from the team while listening
        try:
            user.refresh_from_db(fields=["is_active", "is_staff"])
        except ObjectDoesNotExist:
            return False
    return Task.objects.for_user(user).filter(pk=task_id).exists()


def _current(user, task_id: int, *, fresh: bool = False) -> task_updates.TaskData | None:
    """The task as its `status` event, if `user` may see it."""
    if not _allowed(user, task_id, fresh=fresh):
        return None
    task = task_updates.load_task(task_id)
    return task_updates.task_data(task_updates.progress_view_from_task(task)) if task else None
