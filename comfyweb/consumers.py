"""The browser's live socket: subscribe to topics, receive HTML fragments.

Sockets do not join the channel layer's groups one by one. Each web process
has one `Fanout` (per event loop) that joins a topic's group once, with one
channel of its own, for all its sockets subscribed to it: a published message
is read from Redis once, checked once per user in one database round trip,
encoded once and written to every socket allowed to see it. With a channel per
socket, 500 dashboards cost 500 Redis deliveries, 500 JSON encodings and 500
sequential permission queries per message (a p50 of seconds, issue #15).

Permission is still checked on subscribe and again before every event (a user
removed from a team or deactivated stops receiving at once): the fan-out reads
every subscriber's `is_active`/`is_staff` in one query per event and asks the
topic's `allowed` once per distinct user.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import weakref
from collections.abc import Iterable
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model
from redis.exceptions import TimeoutError as RedisTimeoutError

from comfyweb import live, topics

logger = logging.getLogger(__name__)

# Application close codes (4000-4999): the page's script stops reconnecting on 4401.
CLOSE_UNAUTHENTICATED = 4401
# The channel layer forgets a group member after `group_expiry` (a day by default):
# a fan-out channel that outlives sockets coming and going joins again this often.
REJOIN_SECONDS = 3600.0
# Sockets written to between two turns of the event loop (see `Fanout._deliver`).
FLUSH_EVERY = 25


class LiveConsumer(AsyncJsonWebsocketConsumer):
    # No channel of its own: events come through the process's `Fanout`.
    channel_layer_alias = None

    async def connect(self) -> None:
        self.user = self.scope.get("user")
        self.subscriptions: dict[str, tuple[topics.Topic, str | None]] = {}
        if self.user is None or not self.user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.user_id = self.user.pk
        await self.accept()

    async def disconnect(self, code: int) -> None:
        fanout = Fanout.current()
        for group in list(getattr(self, "subscriptions", {})):
            fanout.leave(group, self)
        self.subscriptions = {}

    async def receive_json(self, content, **kwargs) -> None:
        if not isinstance(content, dict) or content.get("action") != "subscribe":
            await self.send_json({"type": "error", "message": "expected {action: 'subscribe'}"})
            return
        name, key = content.get("topic"), content.get("key")
        key = None if key is None else str(key)
        topic = topics.get(name) if isinstance(name, str) else None
        if topic is None or not live.valid_key(key):
            await self.send_json({"type": "error", "message": f"unknown topic {name!r}"})
            return
        if self.user_id not in await _allowed_users(topic, key, [self]):
            await self.send_json({"type": "error", "message": f"not allowed: {name!r}"})
            return
        group = live.group_name(topic.name, key)
        self.subscriptions[group] = (topic, key)
        await Fanout.current().join(group, self)
        await self.send_json({"type": "subscribed", "topic": topic.name, "key": key})
        for target, html in await database_sync_to_async(topic.snapshot)(self.user, key):
            await self.send_json(live.fragment(topic.name, target, html, key))

    def unsubscribe(self, group: str) -> None:
        """No longer allowed to see `group` (checked by the fan-out before an event)."""
        self.subscriptions.pop(group, None)
        Fanout.current().leave(group, self)


class _Group:
    """One topic group's sockets in this process, and the channel that reads for them."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.members: set[LiveConsumer] = set()
        self.joined: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.reader: asyncio.Task[None] | None = None


class Fanout:
    """This process's (this event loop's) sockets, by group; see the module docstring."""

    _by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Fanout] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self) -> None:
        self._groups: dict[str, _Group] = {}

    @classmethod
    def current(cls) -> Fanout:
        loop = asyncio.get_running_loop()
        fanout = cls._by_loop.get(loop)
        if fanout is None:
            fanout = cls._by_loop[loop] = cls()
        return fanout

    async def join(self, group: str, member: LiveConsumer) -> None:
        """Add `member` to `group`; returns once events published from now on reach it."""
        entry = self._groups.get(group)
        if entry is None:
            entry = self._groups[group] = _Group(group)
            entry.reader = asyncio.create_task(self._read(entry), name=f"live fan-out {group}")
        entry.members.add(member)
        await asyncio.shield(entry.joined)

    def leave(self, group: str, member: LiveConsumer) -> None:
        entry = self._groups.get(group)
        if entry is None:
            return
        entry.members.discard(member)
        if not entry.members:
            del self._groups[group]
            if entry.reader is not None:
                entry.reader.cancel()  # it leaves the channel layer's group on its way out

    def members(self, group: str) -> frozenset[LiveConsumer]:
        entry = self._groups.get(group)
        return frozenset(entry.members) if entry else frozenset()

    async def _read(self, entry: _Group) -> None:
        layer = get_channel_layer()
        channel = None
        try:
            channel = await layer.new_channel()
            await layer.group_add(entry.name, channel)
            joined_at = time.monotonic()
            entry.joined.set_result(None)
            while True:
                try:
                    async with asyncio.timeout(REJOIN_SECONDS):
                        event = await layer.receive(channel)
                except (TimeoutError, RedisTimeoutError):
                    # Ours (time to join again), or Redis slower than the client's
                    # read timeout (settings.CHANNEL_LAYER_READ_TIMEOUT): read again.
                    event = None
                if time.monotonic() - joined_at > REJOIN_SECONDS / 2:
                    await layer.group_add(entry.name, channel)
                    joined_at = time.monotonic()
                if event is not None:
                    await self._deliver(entry, event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Redis gone: the sockets of this group get nothing more until they
            # reconnect and subscribe again; close them so the pages do so now.
            logger.warning("live fan-out of %s stopped: %s", entry.name, live._say(exc))
            if not entry.joined.done():
                entry.joined.set_exception(exc)
                entry.joined.exception()  # whoever joins is told; nobody else need be
            if self._groups.get(entry.name) is entry:
                del self._groups[entry.name]
            for member in list(entry.members):
                with contextlib.suppress(Exception):
                    await member.close(code=1011)
        finally:
            if not entry.joined.done():
                entry.joined.cancel()
            if channel is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(layer.group_discard(entry.name, channel))

    async def _deliver(self, entry: _Group, event: dict[str, Any]) -> None:
        members = list(entry.members)
        topic = topics.get(event.get("topic", ""))
        if not members:
            return
        allowed = await _allowed_users(topic, event.get("key"), members) if topic else set()
        text = json.dumps(_public(event))
        for index, member in enumerate(members, start=1):
            if member.user_id not in allowed:
                member.unsubscribe(entry.name)
                continue
            try:
                await member.send(text_data=text)
            except Exception:  # that socket is gone; its disconnect leaves the group
                logger.debug("live event not sent to a closing socket", exc_info=True)
            if index % FLUSH_EVERY == 0:
                # A send only queues the frame; the loop writes it to the socket.
                # Let it, so the first sockets get the event before the last is framed.
                await asyncio.sleep(0)


def _public(event: dict[str, Any]) -> dict[str, Any]:
    """The event as the browser gets it (the layer's own keys left out)."""
    return {k: v for k, v in event.items() if not k.startswith("__")}


@database_sync_to_async
def _allowed_users(topic: topics.Topic, key: str | None, members: Iterable[LiveConsumer]):
    """Ids of the users among `members` who may still see `topic`/`key`: their flags
    read again (staff see every team; the socket's user was read at connect), then
    the topic's own check once per user."""
    users: dict[Any, Any] = {}  # one socket's user per id (each refreshes its own on subscribe)
    for member in members:
        users.setdefault(member.user_id, member.user)
    rows = get_user_model().objects.filter(pk__in=users).values_list("pk", "is_active", "is_staff")
    allowed = set()
    for pk, is_active, is_staff in rows:
        user = users[pk]
        user.is_active, user.is_staff = is_active, is_staff
        if is_active and topic.allowed(user, key):
            allowed.add(pk)
    return allowed
