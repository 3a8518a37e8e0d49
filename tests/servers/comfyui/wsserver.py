"""A tiny scriptable WebSocket server on 127.0.0.1, for stream behaviour the
simulator has no reason to produce: unknown types, garbage frames, sockets
dropped on purpose, every connection refused after the handshake."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve


class ScriptedServer:
    def __init__(self, *, hang_up_first: int = 0, greet: bool = True) -> None:
        # The first `hang_up_first` connections are closed right after the handshake.
        self.hang_up_first = hang_up_first
        self.greet = greet
        self.accepted = 0
        self.connections: asyncio.Queue[ServerConnection] = asyncio.Queue()
        self.received: asyncio.Queue[str | bytes] = asyncio.Queue()
        self.close_codes: asyncio.Queue[int | None] = asyncio.Queue()
        self._server: Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, connection: ServerConnection) -> None:
        self.accepted += 1
        if self.accepted <= self.hang_up_first:
            await connection.close()
            return
        if self.greet:  # as ComfyUI: one status carrying the client's sid
            client_id = parse_qs(urlsplit(connection.request.path).query)["clientId"][0]
            await connection.send(status(0, sid=client_id))
        await self.connections.put(connection)
        async for message in connection:
            await self.received.put(message)
        await self.close_codes.put(connection.close_code)

    async def next_connection(self) -> ServerConnection:
        return await asyncio.wait_for(self.connections.get(), 10)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[ScriptedServer]:
        self._server = await serve(self._handle, "127.0.0.1", 0)
        try:
            yield self
        finally:
            self._server.close()
            await self._server.wait_closed()


def status(queue_remaining: int, sid: str | None = None) -> str:
    data: dict = {"status": {"exec_info": {"queue_remaining": queue_remaining}}}
    if sid is not None:
        data["sid"] = sid
    return json.dumps({"type": "status", "data": data})


def message(kind: str, **data: object) -> str:
    return json.dumps({"type": kind, "data": data})
