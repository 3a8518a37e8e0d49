"""A local instance's console: its last lines, readable from any process, and live.

The launcher tails each instance's log file and hands the new lines here: they
go to a capped Redis list (the last `LINES_KEPT`, the ring buffer web and the API
read with `console_tail`) and, live, to the staff-only "local-console" topic
keyed by instance id: the console block re-rendered (`fragment.update`, for the
instance page) and the new lines as data (`console.lines`, for event streams).
Redis being away loses console lines, never the instance: every call here is
best effort and never raises.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Sequence
from typing import TypedDict

import redis
from django.conf import settings
from django.template.loader import render_to_string

from comfyweb import live, topics

logger = logging.getLogger("servers.local")

TOPIC = "local-console"
LINES_KEPT = 500
TEMPLATE = "servers/local_console.html"
_PREFIX = "comfyweb:local"


class ConsoleLines(TypedDict):
    """`console.lines` data: lines the instance printed since the last push."""

    instance: int
    lines: list[str]


def console_target(instance_id: int) -> str:
    return f"local-{instance_id}-console"


def _lines_key(instance_id: int) -> str:
    return f"{_PREFIX}:{instance_id}:console"


def _offset_key(instance_id: int) -> str:
    return f"{_PREFIX}:{instance_id}:log-offset"


@functools.cache
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def redis_client() -> redis.Redis:
    return _client(settings.REDIS_URL)


def append(instance_id: int, lines: Sequence[str]) -> None:
    """Keep `lines` in the instance's ring buffer (the last LINES_KEPT)."""
    if not lines:
        return
    key = _lines_key(instance_id)
    try:
        with redis_client().pipeline(transaction=True) as pipe:
            pipe.rpush(key, *lines)
            pipe.ltrim(key, -LINES_KEPT, -1)
            pipe.execute()
    except redis.RedisError as error:
        logger.warning("console lines of instance %s not kept: %s", instance_id, error)


def console_tail(instance, n: int = LINES_KEPT) -> list[str]:
    """The last `n` lines the instance printed (at most LINES_KEPT); [] if Redis is away."""
    instance_id = getattr(instance, "pk", instance)
    n = max(0, min(int(n), LINES_KEPT))
    if n == 0:
        return []
    try:
        raw = redis_client().lrange(_lines_key(instance_id), -n, -1)
    except redis.RedisError as error:
        logger.warning("console of instance %s not read: %s", instance_id, error)
        return []
    return [line.decode(errors="replace") for line in raw]


def forget(instance_id: int) -> None:
    """The instance is deleted: its console goes with it."""
    with contextlib.suppress(redis.RedisError):
        redis_client().delete(_lines_key(instance_id), _offset_key(instance_id))


def save_offset(instance_id: int, inode: int | None, offset: int) -> None:
    """How far the log file was read, so a restarted launcher goes on from there."""
    if inode is None:
        return
    with contextlib.suppress(redis.RedisError):
        redis_client().set(_offset_key(instance_id), f"{inode}:{offset}")


def load_offset(instance_id: int) -> tuple[int, int] | None:
    try:
        value = redis_client().get(_offset_key(instance_id))
    except redis.RedisError:
        return None
    if not value:
        return None
    inode, _, offset = value.decode().partition(":")
    try:
        return int(inode), int(offset)
    except ValueError:
        return None


def render_console(instance_id: int, lines: Sequence[str] | None = None) -> str:
    if lines is None:
        lines = console_tail(instance_id)
    context = {"target": console_target(instance_id), "instance_id": instance_id, "lines": lines}
    return render_to_string(TEMPLATE, context)


def publish(instance_id: int, new_lines: Sequence[str]) -> None:
    """Push the console to the instance's page and the new lines to event streams."""
    key = str(instance_id)
    data: ConsoleLines = {"instance": instance_id, "lines": list(new_lines)}
    live.publish_data(TOPIC, "console.lines", data, key=key)
    live.publish_fragment(TOPIC, console_target(instance_id), render_console(instance_id), key=key)


def _staff(user, key: str | None) -> bool:
    return (
        user.is_authenticated
        and user.is_active
        and user.is_staff
        and key is not None
        and key.isdigit()
    )


console_topic = topics.Topic(
    name=TOPIC,
    allowed=_staff,
    snapshot=lambda user, key: [(console_target(int(key)), render_console(int(key)))],
)
