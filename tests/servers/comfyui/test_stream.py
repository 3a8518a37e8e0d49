"""EventStream against a scripted local WebSocket server (127.0.0.1 only)."""

from __future__ import annotations

import asyncio
import json
import struct
import uuid

import pytest

from servers.comfyui import (
    Connected,
    Disconnected,
    EventStream,
    Executing,
    ExecutionStart,
    FeatureFlags,
    PreviewImage,
    Progress,
    ProgressText,
    Reconnected,
    Status,
    Subscription,
    UnknownEvent,
    websocket_url,
)
from tests.clocks import FakeClock

from .fakes import GUARD, PromptEvents, closed_port, next_of, quick_backoff
from .wsserver import ScriptedServer, message


def new_stream(server: ScriptedServer, **kwargs) -> EventStream:
    kwargs.setdefault("backoff", quick_backoff())
    return EventStream(server.base_url, f"test-{uuid.uuid4().hex[:8]}", **kwargs)


def test_websocket_url_follows_the_base_urls_scheme_and_prefix():
    assert websocket_url("http://127.0.0.1:8188", "a b") == "ws://127.0.0.1:8188/ws?clientId=a%20b"
    assert (
        websocket_url("https://gpu.example/comfy/", "c") == "wss://gpu.example/comfy/ws?clientId=c"
    )
    with pytest.raises(ValueError, match="http"):
        websocket_url("ftp://x", "c")


async def test_stream_connects_with_its_client_id_and_auth_headers():
    async with ScriptedServer().running() as server:
        stream = new_stream(server, headers={"Authorization": "Bearer t0ken"})
        events = stream.listen()
        async with stream:
            conn = await server.next_connection()
            assert conn.request.path == f"/ws?clientId={stream.client_id}"
            assert conn.request.headers["Authorization"] == "Bearer t0ken"
            assert "Origin" not in conn.request.headers
            assert await next_of(events, Connected, skip=False) == Connected(url=stream.url)
            assert await next_of(events, Status, skip=False) == Status(
                queue_remaining=0, sid=stream.client_id
            )
            assert stream.connected
            stats = stream.stats
            assert stats.connected_since is not None
            assert stats.events_by_type == {"status": 1}
            assert stats.events_per_second > 0


async def test_feature_flags_are_the_first_message_sent():
    async with ScriptedServer().running() as server:
        stream = new_stream(server, feature_flags={"supports_preview_metadata": True})
        events = stream.listen()
        async with stream:
            conn = await server.next_connection()
            first = await asyncio.wait_for(server.received.get(), GUARD)
            assert json.loads(first) == {
                "type": "feature_flags",
                "data": {"supports_preview_metadata": True},
            }
            await conn.send(message("feature_flags", supports_preview_metadata=True))
            await next_of(events, FeatureFlags)
            assert stream.server_features == {"supports_preview_metadata": True}


async def test_unknown_types_and_garbage_frames_are_counted_and_never_stop_the_reader():
    async with ScriptedServer().running() as server:
        stream = new_stream(server)
        events = stream.listen()
        async with stream:
            conn = await server.next_connection()
            await conn.send(message("crystools.monitor", cpu=3))
            await conn.send("{not json")
            await conn.send(b"\x00\x00")
            await conn.send(message("status", status="wrong"))
            await conn.send(message("execution_start", prompt_id="p1", timestamp=1))
            unknown = await next_of(events, UnknownEvent)
            assert unknown == UnknownEvent(type="crystools.monitor", data={"cpu": 3})
            assert await next_of(events, ExecutionStart, skip=False)
            stats = stream.stats
            assert stats.unknown_events == 1
            assert stats.parse_errors == 3
            assert stats.events_by_type["crystools.monitor"] == 1
            assert stream.connected


async def test_subscription_gets_only_its_prompt_and_ends_with_it():
    async with ScriptedServer().running() as server:
        stream = new_stream(server)
        async with stream:
            conn = await server.next_connection()
            mine = PromptEvents(stream, "mine")
            for prompt_id in ("other", "mine"):
                await conn.send(message("execution_start", prompt_id=prompt_id, timestamp=1))
                await conn.send(message("executing", node=None, prompt_id=prompt_id))
            run = [e async for e in mine]
            assert [e.prompt_id for e in run] == ["mine", "mine"]


async def test_binary_previews_are_decoded_and_pinned_to_the_running_prompt():
    async with ScriptedServer().running() as server:
        stream = new_stream(server)
        async with stream:
            conn = await server.next_connection()
            sub = PromptEvents(stream, "p1")
            png = bytes.fromhex("89504e470d0a1a0a") + b"rest"
            await conn.send(message("execution_start", prompt_id="p1", timestamp=1))
            await conn.send(struct.pack(">II", 3, 1) + b"2" + b"step 1/2")
            await conn.send(struct.pack(">II", 1, 2) + png)
            await conn.send(message("executing", node=None, prompt_id="p1"))
            run = [e async for e in sub]
            assert run[1] == ProgressText(node_id="2", text="step 1/2", prompt_id="p1")
            preview = run[2]
            assert isinstance(preview, PreviewImage)
            assert (preview.prompt_id, preview.mime_type, preview.image) == ("p1", "image/png", png)


async def test_after_a_dropped_socket_the_stream_reconnects_and_says_so():
    async with ScriptedServer().running() as server:
        stream = new_stream(server)
        events = stream.listen()
        async with stream:
            first = await server.next_connection()
            sub = PromptEvents(stream, "running")
            await first.send(message("execution_start", prompt_id="running", timestamp=1))
            await next_of(events, ExecutionStart)
            first.transport.abort()  # no close frame: as a crash or a cut cable
            lost = await next_of(events, Disconnected, skip=False)
            assert lost.retry_in == pytest.approx(0.01)
            await server.next_connection()
            back = await next_of(events, Reconnected)
            assert back.reconnects == 1
            assert stream.stats.reconnects == 1
            # The subscriber learns of the gap too, so it can reconcile from /history.
            assert [type(e) for e in sub.pending()] == [ExecutionStart, Disconnected, Reconnected]


async def test_reconnect_executing_without_prompt_id_is_not_pinned_to_a_stale_prompt():
    async with ScriptedServer().running() as server:
        stream = new_stream(server)
        events = stream.listen()
        async with stream:
            first = await server.next_connection()
            await first.send(message("execution_start", prompt_id="p1", timestamp=1))
            await next_of(events, ExecutionStart)
            await first.close()
            second = await server.next_connection()
            await second.send(message("executing", node="2"))
            await second.send(struct.pack(">II", 1, 2) + b"img")
            assert (await next_of(events, Executing)).prompt_id is None
            assert (await next_of(events, PreviewImage)).prompt_id is None


async def test_backoff_grows_while_connections_keep_dropping_and_is_capped():
    async with ScriptedServer(hang_up_first=5).running() as server:
        stream = new_stream(server, backoff=quick_backoff(clock=FakeClock()))
        events = stream.listen()
        async with stream:
            delays = [(await next_of(events, Disconnected)).retry_in for _ in range(5)]
            await server.next_connection()
            await next_of(events, Reconnected)
        assert delays == [0.01, 0.02, 0.04, 0.04, 0.04]
        assert stream.stats.reconnects == 5


async def test_backoff_resets_once_a_connection_has_been_stable():
    clock = FakeClock()
    async with ScriptedServer(hang_up_first=3).running() as server:
        stream = new_stream(server, backoff=quick_backoff(clock=clock, stable_after=30))
        events = stream.listen()
        async with stream:
            delays = [(await next_of(events, Disconnected)).retry_in for _ in range(3)]
            stable = await server.next_connection()
            await next_of(events, Reconnected)
            clock.advance(31)
            await stable.close()
            after_stable = await next_of(events, Disconnected)
        assert delays == [0.01, 0.02, 0.04]
        assert after_stable.retry_in == 0.01


async def test_refused_connections_are_retried_forever_with_growing_delays():
    slept: asyncio.Queue[float] = asyncio.Queue()

    async def record(delay: float) -> None:
        await slept.put(delay)
        await asyncio.sleep(0)

    stream = EventStream(
        f"http://127.0.0.1:{closed_port()}",
        backoff=quick_backoff(clock=FakeClock()),
        sleep=record,
    )
    events = stream.listen()
    async with stream:
        delays = [await asyncio.wait_for(slept.get(), GUARD) for _ in range(6)]
        stats = stream.stats
    assert delays == [0.01, 0.02, 0.04, 0.04, 0.04, 0.04]
    assert stats.failed_attempts >= 6
    assert stats.retry_in == 0.04
    assert "ConnectionRefusedError" in stats.last_error
    assert not stats.connected
    # Failed retries of a stream that was never up are not "disconnections".
    assert events.pending() == []


async def test_retry_now_ends_the_wait_before_the_next_attempt():
    waits: asyncio.Queue[float] = asyncio.Queue()

    async def wait_forever(delay: float) -> None:
        await waits.put(delay)
        await asyncio.Event().wait()  # only retry_now() or close() ends it

    stream = EventStream(
        f"http://127.0.0.1:{closed_port()}",
        backoff=quick_backoff(clock=FakeClock()),
        sleep=wait_forever,
    )
    async with stream:
        first = await asyncio.wait_for(waits.get(), GUARD)
        stream.retry_now()
        second = await asyncio.wait_for(waits.get(), GUARD)  # it tried again: refused
        stats = stream.stats
    assert stats.failed_attempts == 2
    assert second > first  # the backoff is kept: a refusing server still backs off
    assert not stats.connected


async def test_close_is_clean_and_ends_every_consumer():
    async with ScriptedServer().running() as server:
        stream = new_stream(server)
        events = stream.listen()
        await stream.start()
        await server.next_connection()
        await next_of(events, Status)
        sub = PromptEvents(stream, "p1")
        await stream.close()
        assert await asyncio.wait_for(server.close_codes.get(), GUARD) == 1000
        assert [e async for e in sub] == []
        assert [e async for e in events] == []
        assert not stream.connected
        assert server.accepted == 1


async def test_a_second_stream_for_the_same_server_and_client_id_is_refused():
    async with ScriptedServer().running() as server:
        async with new_stream(server) as stream:
            twin = EventStream(server.base_url, stream.client_id)
            with pytest.raises(RuntimeError, match="already open"):
                await twin.start()
        async with EventStream(server.base_url, stream.client_id):
            pass  # free again once the first one closed


async def test_close_during_the_handshake_still_closes_properly():
    async with ScriptedServer().running() as server:
        stream = new_stream(server)
        await stream.start()
        await server.next_connection()  # the client may not have seen the 101 yet
        await stream.close()
        assert await asyncio.wait_for(server.close_codes.get(), GUARD) == 1000
        assert server.accepted == 1


async def test_a_closed_stream_cannot_be_restarted():
    stream = EventStream(f"http://127.0.0.1:{closed_port()}")
    await stream.close()
    with pytest.raises(RuntimeError, match="closed"):
        await stream.start()
    assert [e async for e in stream.listen()] == []


async def test_a_listener_left_with_async_with_stops_receiving():
    async with ScriptedServer().running() as server, new_stream(server) as stream:
        async with stream.listen() as events:
            await next_of(events, Status)
        conn = await server.next_connection()
        async with stream.listen() as later:
            await conn.send(message("execution_start", prompt_id="p2", timestamp=1))
            assert (await next_of(later, ExecutionStart)).prompt_id == "p2"
        assert events.pending() == []


async def test_a_requested_reconnect_goes_through_the_backoff():
    async with ScriptedServer().running() as server, new_stream(server) as stream:
        events = stream.listen()
        await server.next_connection()
        await stream.wait_connected()
        await stream.reconnect()
        lost = await next_of(events, Disconnected)
        assert (lost.reason, lost.retry_in) == ("reconnect requested", 0.01)
        await server.next_connection()
        assert (await next_of(events, Reconnected)).reconnects == 1


def test_a_slow_consumer_loses_the_oldest_events_not_the_newest():
    sub = Subscription(maxsize=2)
    for value in range(4):
        sub.put(Progress(prompt_id="p", value=value, max=4))
    assert [e.value for e in sub.pending()] == [2, 3]
    assert sub.dropped == 2
