"""The browser's live socket, driven in process: a signed-in user's connection."""

from __future__ import annotations

from channels.testing import WebsocketCommunicator

from comfyweb.consumers import LiveConsumer


async def connected_as(user) -> WebsocketCommunicator:
    """A live socket of `user`'s, connected (and proven so)."""
    communicator = WebsocketCommunicator(LiveConsumer.as_asgi(), "/ws/live/")
    communicator.scope["user"] = user
    connected, _ = await communicator.connect()
    assert connected
    return communicator
