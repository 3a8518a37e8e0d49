"""The one publisher of live updates to browsers.

Workers, the monitor and views never call `group_send` themselves: they call the
functions here, which fix the payload shape (typed below) and the group naming.
Browsers receive server-rendered HTML fragments and swap them in by element id;
a topic may also carry typed JSON (`DataUpdate`) for scripts, which `listen()`
hands to the API's event streams from the same groups the socket joins.

Publishing is best effort and never raises: it runs after the work it reports
was saved (often in an on-commit hook of a request), and browsers catch up from
the page or the socket's snapshot. A failure is one warning per outage, not a
500 for work that was done. A pooled Redis connection that predates a restart
fails once and then reconnects, so a send that fails to connect is tried twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal, TypedDict

from channels.layers import get_channel_layer
from redis.exceptions import ConnectionError as RedisConnectionError

logger = logging.getLogger(__name__)

_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# What a dead pooled connection raises on its first use after Redis restarted.
_RECONNECTABLE = (RedisConnectionError, ConnectionError)
# user:password@ in a URL an error message might quote.
_CREDENTIALS = re.compile(r"//[^/@\s]*@")


class FragmentUpdate(TypedDict):
    """Replace the element whose id is `target` with `html` (its new outer HTML)."""

    type: Literal["fragment.update"]
    topic: str
    key: str | None
    target: str
    html: str


class FragmentRefresh(TypedDict):
    """Fetch `url` (a partial for the signed-in user) and put it in place of `target`.

    For panels whose content differs per user (their teams' counts): one hint
    broadcast to everyone, each browser asks for its own view, throttled.
    """

    type: Literal["fragment.refresh"]
    topic: str
    key: str | None
    target: str
    url: str


class DataUpdate(TypedDict):
    """JSON beside the fragments: `event` says what happened, `data` is its payload
    (typed by the publishing module). Browsers ignore it; event streams send it."""

    type: Literal["data.update"]
    topic: str
    key: str | None
    event: str
    data: Mapping[str, Any]


def valid_key(key: str | None) -> bool:
    return key is None or bool(_KEY.match(key))


def group_name(topic: str, key: str | None = None) -> str:
    """Channel-layer group for one topic (and one object of it, e.g. a task id)."""
    if not valid_key(key) or not _KEY.match(topic):
        raise ValueError(f"invalid live topic {topic!r} / key {key!r}")
    return f"live.{topic}" if key is None else f"live.{topic}.{key}"


def fragment(topic: str, target: str, html: str, key: str | None = None) -> FragmentUpdate:
    return {"type": "fragment.update", "topic": topic, "key": key, "target": target, "html": html}


async def apublish_fragment(topic: str, target: str, html: str, key: str | None = None) -> None:
    await _asend(topic, key, fragment(topic, target, html, key))


def publish_fragment(topic: str, target: str, html: str, key: str | None = None) -> None:
    _send(topic, key, fragment(topic, target, html, key))


def publish_refresh(topic: str, target: str, url: str, key: str | None = None) -> None:
    message: FragmentRefresh = {
        "type": "fragment.refresh",
        "topic": topic,
        "key": key,
        "target": target,
        "url": url,
    }
    _send(topic, key, message)


def _data(topic: str, event: str, data: Mapping[str, Any], key: str | None) -> DataUpdate:
    return {"type": "data.update", "topic": topic, "key": key, "event": event, "data": data}


async def apublish_data(
    topic: str, event: str, data: Mapping[str, Any], key: str | None = None
) -> None:
    await _asend(topic, key, _data(topic, event, data, key))


def publish_data(topic: str, event: str, data: Mapping[str, Any], key: str | None = None) -> None:
    _send(topic, key, _data(topic, event, data, key))


# -- who listens -----------------------------------------------------------------------

Group = tuple[str, str | None]  # (topic, key)


async def awatched(*groups: Group) -> list[bool]:
    """Whether anyone listens to each topic/key now: a web process's fan-out (one
    member per process, whatever its number of sockets) or an API event stream.

    Publishers render and send nothing for nobody: most tasks have no open page,
    and rendering a task's fragments costs several queries. Skipping loses nothing:
    a socket that subscribes later joins first and then reads the topic's snapshot,
    which sees every change saved before the snapshot is taken. When Redis cannot
    say (or the layer is not Redis), the answer is yes: publish as before."""
    layer = get_channel_layer()
    try:
        # Members older than the layer's expiry are dropped by its own group_send.
        since = int(time.time()) - layer.group_expiry
        answers = []
        for topic, key in groups:
            group = group_name(topic, key)
            connection = layer.connection(layer.consistent_hash(group))
            # channels_redis keeps a group as a sorted set of channel -> join time.
            members = await connection.zcount(layer._group_key(group), since, "+inf")
            answers.append(members > 0)
        return answers
    except Exception:
        return [True] * len(groups)


def watched(*groups: Group) -> list[bool]:
    """`awatched` from sync code (on the publisher loop, as sends are)."""
    try:
        answer = asyncio.run_coroutine_threadsafe(awatched(*groups), _publisher.get())
        return answer.result(timeout=SEND_TIMEOUT)
    except Exception:
        return [True] * len(groups)


# -- sending: best effort ---------------------------------------------------------------

_failing = False  # one warning per outage, not one per message (progress: 10 a second)


async def _asend(topic: str, key: str | None, message: Mapping[str, Any]) -> None:
    """Send `message` to the group of `topic`/`key`; never raises (module docstring)."""
    global _failing
    try:
        group = group_name(topic, key)
        layer = get_channel_layer()
        try:
            await layer.group_send(group, message)
        except _RECONNECTABLE:
            await layer.group_send(group, message)
    except Exception as exc:
        if not _failing:
            logger.warning(
                "live updates not sent (%s on %r): %s", message["type"], topic, _say(exc)
            )
        _failing = True
    else:
        if _failing:
            logger.info("live updates are sent again")
        _failing = False


# A send from sync code waits at most this long for Redis.
SEND_TIMEOUT = 5.0


class _PublisherLoop:
    """An event loop of this process's own, running in a daemon thread, for sends
    from sync code. The channel layer keeps one Redis pool per event loop, so
    `async_to_sync` (a fresh loop per call) connected to Redis again for every
    message: ~2.4 ms of CPU a send, a fifth of a worker's time per task. A forked
    child (django-q's workers) starts its own, the parent's thread not being there."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0

    def get(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="live-publisher")
                thread.daemon = True
                thread.start()
                self._loop, self._pid = loop, os.getpid()
            return self._loop


_publisher = _PublisherLoop()


def _send(topic: str, key: str | None, message: Mapping[str, Any]) -> None:
    try:
        sent = asyncio.run_coroutine_threadsafe(_asend(topic, key, message), _publisher.get())
        sent.result(timeout=SEND_TIMEOUT)
    except Exception as exc:  # the loop itself, or Redis slower than the timeout
        logger.warning("live update not sent (%s on %r): %s", message["type"], topic, _say(exc))


def _say(exc: BaseException) -> str:
    """The error in one line, without credentials a connection URL may carry."""
    return f"{type(exc).__name__}: {_CREDENTIALS.sub('//***@', str(exc))}"[:300]


class Listener:
    """One channel of our own in a topic's group: what a socket consumer gets."""

    def __init__(self, layer, channel: str) -> None:
        self._layer = layer
        self._channel = channel

    async def receive(self) -> dict[str, Any]:
        """The next message (bound it with `asyncio.timeout`: cancelling is safe)."""
        return await self._layer.receive(self._channel)


@contextlib.asynccontextmanager
async def listen(topic: str, key: str | None = None) -> AsyncIterator[Listener]:
    """Join the group of `topic` (and `key`) until the block ends. The caller checks
    who may listen, before and on every message, as the socket consumer does."""
    layer = get_channel_layer()
    group = group_name(topic, key)
    channel = await layer.new_channel()
    await layer.group_add(group, channel)
    try:
        yield Listener(layer, channel)
    finally:
        await layer.group_discard(group, channel)
