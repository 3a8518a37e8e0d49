"""WebSocket connections and message routing, as ComfyUI's PromptServer does it.

One socket per clientId in `sockets`; a reconnect with the same clientId
replaces the entry and the older socket goes silent, and when any socket closes
its clientId's entry is removed even if a newer socket owns it (gotcha 8).
Messages go through one queue drained by one publisher task, so every client
sees them in the order they were produced, whoever produced them.
`sid=None` means every open socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from servers.simulator import frames
from servers.simulator.aio import cancel_and_wait

logger = logging.getLogger(__name__)


@dataclass
class Preview:
    """A ProgressBar preview; sent as a type-1 or type-4 frame, by the recipient's flags."""

    image_format: str
    image: bytes
    metadata: dict[str, Any]


class Hub:
    def __init__(self, queue_info: Callable[[], dict[str, Any]]):
        self._queue_info = queue_info
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.features: dict[str, dict[str, Any]] = {}
        # Every open socket, including ones replaced in `sockets`, so that
        # drop_all() and shutdown reach them too.
        self._open: set[web.WebSocketResponse] = set()
        self._messages: asyncio.Queue[tuple[str | int, Any, str | None]] = asyncio.Queue()
        # Frames written to each open socket (text and binary), for `sent_to`.
        self._sent: dict[web.WebSocketResponse, int] = {}
        self._publisher: asyncio.Task[None] | None = None
        # Set by the executor: whose prompt runs and its last executing node.
        self.client_id: str | None = None
        self.last_node_id: str | None = None

    def start(self) -> None:
        self._publisher = asyncio.get_running_loop().create_task(self._publish_loop())

    async def stop(self) -> None:
        await cancel_and_wait(self._publisher)
        self._publisher = None
        await self.drop_all()

    async def drop_all(self) -> None:
        async def close(ws: web.WebSocketResponse) -> None:
            with contextlib.suppress(Exception):
                await ws.close(code=WSCloseCode.GOING_AWAY)

        # Concurrently: one client slow to answer the close must not hold up the rest.
        await asyncio.gather(*(close(ws) for ws in list(self._open)))

    # -- producing -------------------------------------------------------
    def send_sync(self, event: str | int, data: Any, sid: str | None = None) -> None:
        """Queue a message (ComfyUI's PromptServer.send_sync): sid None = every socket."""
        self._messages.put_nowait((event, data, sid))

    def queue_updated(self) -> None:
        self.send_sync("status", {"status": self._queue_info()})

    async def flushed(self) -> None:
        """Until every message queued so far has been written to its sockets."""
        await self._messages.join()

    def sent_to(self, sid: str) -> int:
        """Frames written so far to the socket that now holds `sid` (0 if none)."""
        ws = self.sockets.get(sid)
        return self._sent.get(ws, 0) if ws is not None else 0

    def supports_preview_metadata(self, sid: str | None) -> bool:
        if sid is None:
            return False
        return bool(self.features.get(sid, {}).get("supports_preview_metadata"))

    # -- delivering ------------------------------------------------------
    async def _publish_loop(self) -> None:
        while True:
            event, data, sid = await self._messages.get()
            try:
                await self._deliver(event, data, sid)
            except Exception:
                logger.exception("simulator: failed to deliver %s", event)
            finally:
                self._messages.task_done()

    async def _deliver(self, event: str | int, data: Any, sid: str | None) -> None:
        if sid is None:
            targets = list(self.sockets.values())
        elif sid in self.sockets:
            targets = [self.sockets[sid]]
        else:
            return
        payload = self._encode(event, data)
        for ws in targets:
            with contextlib.suppress(ConnectionError, RuntimeError):
                if isinstance(payload, bytes):
                    await ws.send_bytes(payload)
                else:
                    await ws.send_str(payload)
                self._count(ws)

    @staticmethod
    def _encode(event: str | int, data: Any) -> str | bytes:
        if event == frames.PREVIEW_IMAGE:
            return frames.preview_image(data.image_format, data.image)
        if event == frames.PREVIEW_IMAGE_WITH_METADATA:
            return frames.preview_image_with_metadata(data.metadata, data.image)
        if isinstance(event, int):
            return bytes(data)
        return json.dumps({"type": event, "data": data})

    async def _send_now(self, ws: web.WebSocketResponse, event: str, data: Any) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.send_str(json.dumps({"type": event, "data": data}))
            self._count(ws)

    def _count(self, ws: web.WebSocketResponse) -> None:
        if ws in self._open:
            self._sent[ws] = self._sent.get(ws, 0) + 1

    # -- the /ws endpoint ------------------------------------------------
    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.rel_url.query.get("clientId", "")
        if sid:
            self.sockets.pop(sid, None)
        else:
            sid = uuid.uuid4().hex
        self.sockets[sid] = ws
        self.features[sid] = {}
        self._open.add(ws)
        try:
            await self._send_now(ws, "status", {"status": self._queue_info(), "sid": sid})
            if self.client_id == sid and self.last_node_id is not None:
                # Reconnect of the executing client: no prompt_id, no display_node.
                await self._send_now(ws, "executing", {"node": self.last_node_id})
            first_message = True
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(message.data)
                except json.JSONDecodeError:
                    continue
                if first_message and isinstance(data, dict) and data.get("type") == "feature_flags":
                    flags = data.get("data", {})
                    self.features[sid] = flags if isinstance(flags, dict) else {}
                    await self._send_now(ws, "feature_flags", dict(frames.SERVER_FEATURES))
                first_message = False
        finally:
            self._open.discard(ws)
            self._sent.pop(ws, None)
            self.sockets.pop(sid, None)
            self.features.pop(sid, None)
        return ws
