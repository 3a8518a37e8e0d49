"""A local instance's console: its last lines, readable from any process.

The launcher tails each instance's log file and hands the new lines here: they
go to a capped Redis list (the last `LINES_KEPT`, the ring buffer web and the API
read with `console_tail`); `servers.local.panel` pushes them live. Redis being
away loses console lines, never the instance: every call here is best effort and
never raises.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Sequence

import redis
from django.conf import settings

logger = logging.getLogger("servers.local")

LINES_KEPT = 500
_PREFIX = "comfyweb:local"


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
