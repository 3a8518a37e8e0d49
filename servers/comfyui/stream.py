"""EventStream: the one WebSocket to one ComfyUI server for one client id.

Connects to `ws(s)://host/ws?clientId=...`, parses every frame into a typed
event, and hands all of them to every `listen()` (or `async for` on the stream);
a caller that follows one prompt listens before POST /prompt (ComfyUI may send
the whole run before the reply is read, PROTOCOL.md gotcha 1) and filters by
`prompt_id`. It reconnects forever with `comfyweb.backoff.Backoff` and says so
with `Disconnected` / `Reconnected` events, after which the caller reconciles
from /history and /queue: whatever ComfyUI sent during the gap is lost for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from comfyweb.backoff import Backoff

from .errors import EventParseError
from .events import (
    Connected,
    Disconnected,
    Event,
    ExecutionError,
    ExecutionInterrupted,
    ExecutionSuccess,
    FeatureFlags,
    PreviewImage,
    ProgressText,
    Reconnected,
    UnknownEvent,
    is_prompt_end,
)
from .parser import parse_frame
from .stats import StatsRecorder, StreamStats

logger = logging.getLogger(__name__)

# ComfyUI keeps one socket per clientId and a second one silently steals (and on
# close kills) the first one's events (PROTOCOL.md gotcha 8): refuse it here.
_open_streams: set[str] = set()
# How long close() lets a handshake in progress finish, to close it properly.
_CLOSE_GRACE = 2.0


class Subscription:
    """A bounded queue of events, consumed with `async for` or `await get()`.

    A slow consumer loses the *oldest* events (counted in `dropped`) rather than
    stalling the socket reader, which serves every prompt of the server. The
    iteration ends once `finish()` was called and the queue is drained.

    `on_arrival` is called with each event as it is queued, before the consumer
    has got through the ones ahead of it: for what must not wait behind them.
    It must be quick and must not raise (what it raises is logged and dropped).
    """

    def __init__(
        self,
        maxsize: int,
        on_close: Callable[[Subscription], None] | None = None,
        on_arrival: Callable[[Event], None] | None = None,
    ):
        self._items: deque[Event] = deque(maxlen=maxsize)
        self._ready = asyncio.Event()
        self._finished = False
        self._on_close = on_close
        self._on_arrival = on_arrival
        self.dropped = 0

    def put(self, event: Event) -> None:
        if self._finished:
            return
        if self._on_arrival is not None:
            try:
                self._on_arrival(event)
            except Exception:
                logger.exception("the arrival hook failed on %s", event.type)
        if len(self._items) == self._items.maxlen:
            self.dropped += 1
        self._items.append(event)
        self._ready.set()

    def finish(self) -> None:
        """No more events will come; those queued can still be read."""
        self._finished = True
        self._ready.set()

    @property
    def finished(self) -> bool:
        return self._finished

    def close(self) -> None:
        """Stop receiving (and unregister); already queued events stay readable."""
        self.finish()
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close(self)

    def pending(self) -> list[Event]:
        """The events queued right now, without waiting."""
        return list(self._items)

    async def get(self) -> Event:
        """The next event; raises `StopAsyncIteration` when finished and drained."""
        while not self._items:
            if self._finished:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        return await self.get()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


def websocket_url(base_url: str, client_id: str) -> str:
    """`http(s)://host[:port][/prefix]` -> `ws(s)://host[:port][/prefix]/ws?clientId=...`."""
    parts = urlsplit(base_url)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {base_url!r}")
    path = parts.path.rstrip("/") + "/ws"
    return urlunsplit((scheme, parts.netloc, path, f"clientId={quote(client_id, safe='')}", ""))


class EventStream:
    """Events of one ComfyUI server, for one client id, across reconnects."""

    def __init__(
        self,
        base_url: str,
        client_id: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        feature_flags: Mapping[str, Any] | None = None,
        backoff: Backoff | None = None,
        open_timeout: float = 10.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        max_frame_size: int = 64 * 1024 * 1024,
        queue_size: int = 10_000,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client_id = client_id or uuid.uuid4().hex
        self.url = websocket_url(base_url, self.client_id)
        self._headers = dict(headers or {})
        self._feature_flags = dict(feature_flags) if feature_flags is not None else None
        self._backoff = backoff or Backoff()
        self._connect_options: dict[str, Any] = {
            "open_timeout": open_timeout,
            "ping_interval": ping_interval,
            "ping_timeout": ping_timeout,
            "max_size": max_frame_size,
            # ComfyUI checks Origin only when one is sent; never send one.
            "origin": None,
        }
        self._queue_size = queue_size
        self._sleep = sleep
        self._stats = StatsRecorder(clock)
        self._listeners: list[Subscription] = []
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._ever_connected = False
        self._closing = False
        self._nap: asyncio.Future[object] | None = None  # the wait before the next try
        self._reconnect_requested = False
        self._current_prompt: str | None = None
        self.server_features: Mapping[str, Any] | None = None

    # -- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        """Start connecting in the background; returns at once."""
        if self._closing:
            raise RuntimeError("this EventStream was closed; make a new one")
        if self._task is not None:
            return
        if self.url in _open_streams:  # the URL carries the client id
            raise RuntimeError(f"an EventStream for {self.url} is already open in this process")
        _open_streams.add(self.url)
        self._task = asyncio.create_task(self._run(), name=f"comfyui-events {self.url}")

    async def close(self) -> None:
        """Close the socket cleanly, stop reconnecting, end every listener."""
        if self._closing:
            return
        self._closing = True
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._task is not None:
            if self._nap is not None:
                self._task.cancel()
            # A handshake under way finishes and then closes with a close frame;
            # only a peer that hangs on it is cut off.
            await asyncio.wait({self._task}, timeout=_CLOSE_GRACE)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            _open_streams.discard(self.url)
        for listener in self._listeners:
            listener.finish()
        self._listeners.clear()

    async def __aenter__(self) -> EventStream:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def reconnect(self) -> None:
        """Drop the socket and connect again, through the usual backoff.

        For a caller that suspects the server stopped routing to this socket:
        ComfyUI forgets a client id when an *older* socket of it finally closes
        (PROTOCOL.md gotcha 8), e.g. a half-open one from before a network cut,
        and the newer socket then silently receives nothing.
        """
        if self._ws is not None:
            self._reconnect_requested = True
            await self._ws.close()

    def retry_now(self) -> None:
        """Cut the wait before the next connection attempt short.

        For a caller that learnt another way that the server answers again (a
        health check): a server back from a long outage would otherwise stay
        without events for up to the backoff's cap. The attempt count is kept,
        so a server that answers HTTP but refuses the socket still backs off
        between the caller's nudges.
        """
        if self._nap is not None:
            self._nap.cancel()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self) -> None:
        """Until the socket is open (wrap in `asyncio.wait_for` for a deadline)."""
        await self._connected.wait()

    # -- consuming ----------------------------------------------------------------

    def listen(self, *, on_arrival: Callable[[Event], None] | None = None) -> Subscription:
        """Every event from now on, connection events included (`Subscription`
        tells what `on_arrival` is for)."""
        sub = Subscription(self._queue_size, on_close=self._drop_listener, on_arrival=on_arrival)
        if self._closing:
            sub.finish()
        else:
            self._listeners.append(sub)
        return sub

    def __aiter__(self) -> Subscription:
        """`async for event in stream`: a new `listen()` for the loop.

        A loop left early leaves that listener queued up (bounded); where that
        matters, use `async with stream.listen() as events:` which detaches it.
        """
        return self.listen()

    @property
    def stats(self) -> StreamStats:
        s = self._stats
        return StreamStats(
            url=self.url,
            client_id=self.client_id,
            connected=self.connected,
            connected_since=s.connected_since,
            uptime=s.uptime,
            reconnects=s.reconnects,
            failed_attempts=s.failed_attempts,
            last_error=s.last_error,
            retry_in=s.retry_in,
            events_total=s.total,
            events_by_type=dict(s.by_type),
            events_per_second=s.rate.rate(),
            unknown_events=s.unknown,
            parse_errors=s.parse_errors,
            dropped_events=sum(sub.dropped for sub in self._listeners),
            server_features=self.server_features,
        )

    # -- the connection loop --------------------------------------------------------

    async def _run(self) -> None:
        while not self._closing:
            reason = await self._connect_once()
            if self._closing:
                return
            delay = self._backoff.failed()
            if self._stats.disconnected(reason, delay):
                logger.warning(
                    "ComfyUI events lost %s: %s; retry in %.1fs", self.url, reason, delay
                )
                self._publish(Disconnected(reason=reason, retry_in=delay))
            else:
                logger.info("ComfyUI events %s: %s; retry in %.1fs", self.url, reason, delay)
            self._nap = asyncio.ensure_future(self._sleep(delay))
            try:
                # Returns when the nap ends or retry_now() cancels it; a cancel of
                # this task itself (close()) still propagates.
                await asyncio.wait({self._nap})
            finally:
                self._nap.cancel()
                self._nap = None

    async def _connect_once(self) -> str:
        """One connection, read until it ends; returns why it ended."""
        try:
            async with connect(
                self.url, additional_headers=self._headers, **self._connect_options
            ) as ws:
                self._ws = ws
                if self._closing:  # close() came during the handshake
                    return "closed by us"
                self._on_connected()
                if self._feature_flags is not None:
                    message = {"type": "feature_flags", "data": self._feature_flags}
                    await ws.send(json.dumps(message))
                async for frame in ws:
                    self._handle_frame(frame)
                if self._reconnect_requested:
                    return "reconnect requested"
                return f"closed by server (code {ws.close_code})"
        except ConnectionClosed as exc:
            return f"connection lost: {exc}"
        except (OSError, TimeoutError, WebSocketException) as exc:
            return f"{type(exc).__name__}: {exc}"
        except Exception as exc:
            # A bug of ours must not end the stream for good: log it, reconnect.
            logger.exception("ComfyUI event reader for %s failed", self.url)
            return f"reader error: {type(exc).__name__}: {exc}"
        finally:
            self._ws = None
            self._reconnect_requested = False
            self._connected.clear()
            # What ran before the gap may be over; do not pin new frames to it.
            self._current_prompt = None

    def _on_connected(self) -> None:
        self._backoff.succeeded()
        downtime = self._stats.connected()
        self._connected.set()
        if not self._ever_connected:
            self._ever_connected = True
            logger.info("ComfyUI events connected %s", self.url)
            self._publish(Connected(url=self.url))
        else:
            logger.info("ComfyUI events reconnected %s after %.1fs", self.url, downtime or 0.0)
            self._publish(
                Reconnected(
                    url=self.url, downtime=downtime or 0.0, reconnects=self._stats.reconnects
                )
            )

    # -- frames ---------------------------------------------------------------------

    def _handle_frame(self, frame: str | bytes) -> None:
        try:
            event = parse_frame(frame)
        except EventParseError as exc:
            self._stats.parse_errors += 1
            logger.debug("unparseable frame from %s: %s", self.url, exc)
            return
        event = self._attribute(event)
        self._stats.event(event.type, unknown=isinstance(event, UnknownEvent))
        if isinstance(event, FeatureFlags):
            self.server_features = event.flags
        self._publish(event)

    def _attribute(self, event: Event) -> Event:
        """Track the prompt running for this socket; pin prompt-less frames to it.

        Legacy previews and text frames name no prompt, but per socket they come
        between that prompt's other messages (which do name it).
        """
        if isinstance(event, PreviewImage | ProgressText) and event.prompt_id is None:
            if self._current_prompt is not None:
                return dataclasses.replace(event, prompt_id=self._current_prompt)
            return event
        if event.prompt_id is None:
            return event
        if is_prompt_end(event) or isinstance(
            event, ExecutionSuccess | ExecutionError | ExecutionInterrupted
        ):
            if self._current_prompt == event.prompt_id:
                self._current_prompt = None
        elif not isinstance(event, UnknownEvent):
            self._current_prompt = event.prompt_id
        return event

    def _publish(self, event: Event) -> None:
        """To every listener: frames and connection events alike."""
        for listener in self._listeners:
            listener.put(event)

    def _drop_listener(self, sub: Subscription) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(sub)
