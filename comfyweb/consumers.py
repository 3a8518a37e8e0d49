"""The browser's live socket: subscribe to topics, receive HTML fragments."""

from __future__ import annotations

import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from comfyweb import live, topics
from comfyweb.live import DataUpdate, FragmentRefresh, FragmentUpdate

logger = logging.getLogger(__name__)

# Application close codes (4000-4999): the page's script stops reconnecting on 4401.
CLOSE_UNAUTHENTICATED = 4401


class LiveConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        self.user = self.scope.get("user")
        self.subscriptions: dict[str, tuple[topics.Topic, str | None]] = {}
        if self.user is None or not self.user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        await self.accept()

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "subscriptions", {}):
            await self.channel_layer.group_discard(group, self.channel_name)

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
        if not await database_sync_to_async(topic.allowed)(self.user, key):
            await self.send_json({"type": "error", "message": f"not allowed: {name!r}"})
            return
        group = live.group_name(topic.name, key)
        self.subscriptions[group] = (topic, key)
        await self.channel_layer.group_add(group, self.channel_name)
        await self.send_json({"type": "subscribed", "topic": topic.name, "key": key})
        for target, html in await database_sync_to_async(topic.snapshot)(self.user, key):
            await self.send_json(live.fragment(topic.name, target, html, key))

    async def fragment_update(self, event: FragmentUpdate | FragmentRefresh | DataUpdate) -> None:
        # Permission can change while a socket is open (removed from a team,
        # deactivated): check again before every event, not just on subscribe.
        topic = topics.get(event["topic"])
        if topic is None or not await database_sync_to_async(self._still_allowed)(topic, event):
            group = live.group_name(event["topic"], event["key"])
            self.subscriptions.pop(group, None)
            await self.channel_layer.group_discard(group, self.channel_name)
            return
        await self.send_json(event)

    async def fragment_refresh(self, event: FragmentRefresh) -> None:
        # Same gate as an update: the hint says "something changed" and nothing more.
        await self.fragment_update(event)

    async def data_update(self, event: DataUpdate) -> None:
        # The typed JSON the API's event streams send; same gate as the fragments.
        await self.fragment_update(event)

    def _still_allowed(
        self, topic: topics.Topic, event: FragmentUpdate | FragmentRefresh | DataUpdate
    ) -> bool:
        # is_staff too: staff see every team, and the socket's user was read at connect.
        self.user.refresh_from_db(fields=["is_active", "is_staff"])
        return self.user.is_active and topic.allowed(self.user, event["key"])
