"""The client and the event stream driving the ComfyUI simulator end to end."""

from __future__ import annotations

import asyncio
import random
import uuid
from pathlib import Path
from typing import Any

import pytest

from servers.comfyui import (
    BadRequest,
    ComfyUIClient,
    Disconnected,
    Event,
    EventStream,
    Executed,
    Executing,
    ExecutionCached,
    ExecutionError,
    ExecutionInterrupted,
    ExecutionStart,
    ExecutionSuccess,
    FileRef,
    NotFound,
    PreviewImage,
    Progress,
    ProgressText,
    PromptRejected,
    Reconnected,
    ServerError,
    ServerTimeout,
    Status,
    Subscription,
    Timeouts,
)
from tests.clocks import FakeClock

from .capture import workflow
from .fakes import GUARD, PromptEvents, next_of, quick_backoff

PNG_MAGIC = bytes.fromhex("89504e470d0a1a0a")


def slow(steps: int = 5, **inputs: Any) -> dict[str, Any]:
    """slow_progress.json with a fresh nonce, so no run is served from the cache."""
    prompt = workflow("slow_progress")
    prompt["2"]["inputs"] |= {"steps": steps, "nonce": random.randrange(2**31)} | inputs
    return prompt


async def run_to_end(sub: PromptEvents) -> list[Event]:
    async def collect() -> list[Event]:
        return [event async for event in sub]

    return await asyncio.wait_for(collect(), GUARD)


async def submit(
    client: ComfyUIClient, stream: EventStream, prompt: dict[str, Any]
) -> tuple[str, PromptEvents]:
    """Listen first, then submit: the order the fleet code uses."""
    prompt_id = str(uuid.uuid4())
    sub = PromptEvents(stream, prompt_id)
    receipt = await client.submit(prompt, client_id=stream.client_id, prompt_id=prompt_id)
    assert receipt.prompt_id == prompt_id
    return prompt_id, sub


async def test_submitted_prompt_is_tracked_to_completion_and_its_output_fetched(
    client, stream, tmp_path: Path
):
    prompt_id, sub = await submit(client, stream, slow(steps=5))
    events = await run_to_end(sub)
    assert isinstance(events[0], ExecutionStart)
    assert isinstance(events[1], ExecutionCached)
    assert isinstance(events[-2], ExecutionSuccess)
    assert events[-1] == Executing(prompt_id=prompt_id, node=None)
    steps = [e for e in events if isinstance(e, Progress) and e.node == "2"]
    assert [(e.value, e.max) for e in steps] == [(k, 5) for k in range(1, 6)]
    (executed,) = [e for e in events if isinstance(e, Executed)]
    (image,) = executed.files

    entry = await asyncio.wait_for(client.get_history(prompt_id), GUARD)
    assert entry.succeeded
    assert entry.files() == (image,)
    size = await client.download(image, tmp_path / "out.png")
    assert size > len(PNG_MAGIC)
    assert (await client.view_bytes(image)).startswith(PNG_MAGIC)


@pytest.mark.parametrize(
    ("name", "error_type", "node_error"),
    [
        ("invalid_missing_input", "prompt_outputs_failed_validation", "required_input_missing"),
        (
            "invalid_value_out_of_range",
            "prompt_outputs_failed_validation",
            "value_smaller_than_min",
        ),
        ("invalid_unknown_class", "invalid_prompt", None),
        ("invalid_no_outputs", "prompt_no_outputs", None),
    ],
)
async def test_invalid_prompt_is_rejected_with_the_servers_messages_per_node(
    client, stream, name, error_type, node_error
):
    with pytest.raises(PromptRejected) as caught:
        await client.submit(workflow(name), client_id=stream.client_id)
    rejected = caught.value
    assert rejected.permanent
    assert rejected.error.type == error_type
    if node_error is None:
        assert rejected.node_errors == {}
    else:
        (node,) = rejected.node_errors.values()
        assert [e.type for e in node.errors] == [node_error]
    assert (await client.get_queue()).remaining == 0


async def test_failing_node_ends_the_run_with_its_exception(client, stream):
    prompt_id, sub = await submit(client, stream, workflow("fail"))
    events = await run_to_end(sub)
    (error,) = [e for e in events if isinstance(e, ExecutionError)]
    assert (error.node_id, error.node_type) == ("2", "FailNode")
    assert "comfyweb test failure" in error.exception_message
    assert not any(isinstance(e, ExecutionSuccess) for e in events)
    assert events[-1] == Executing(prompt_id=prompt_id, node=None)
    entry = await client.get_history(prompt_id)
    assert not entry.succeeded
    assert not entry.interrupted
    assert entry.error["node_type"] == "FailNode"


async def test_interrupt_stops_only_the_targeted_running_prompt(client, stream):
    prompt_id, sub = await submit(client, stream, slow(steps=2000))
    await next_of(sub, Progress)
    await client.interrupt("some-other-prompt")  # ignored: not the running one
    await client.interrupt(prompt_id)
    events = await run_to_end(sub)
    assert any(isinstance(e, ExecutionInterrupted) for e in events)
    assert not any(isinstance(e, ExecutionSuccess) for e in events)
    entry = await client.get_history(prompt_id)
    assert entry.interrupted


async def test_deleted_queued_prompt_never_runs(client, stream):
    running_id, running = await submit(client, stream, slow(steps=2000))
    queued_id, queued = await submit(client, stream, slow(steps=1))
    await next_of(running, Progress)
    queue = await client.get_queue()
    assert [i.prompt_id for i in queue.running] == [running_id]
    assert [i.prompt_id for i in queue.pending] == [queued_id]
    assert queue.pending[0].client_id == stream.client_id

    await client.delete_queued([queued_id])
    assert (await client.get_queue()).pending == ()
    await client.interrupt(running_id)
    await run_to_end(running)
    assert await client.get_history(queued_id) is None
    assert queued.pending() == []


async def test_stream_reconnects_after_the_server_drops_sockets_and_the_run_goes_on(
    comfyui_sim, client, stream
):
    everything = stream.listen()
    prompt_id, sub = await submit(client, stream, slow(steps=60))
    await next_of(sub, Progress)
    await comfyui_sim.drop_websockets()
    assert isinstance(await next_of(everything, Disconnected), Disconnected)
    back = await next_of(everything, Reconnected)
    assert back.reconnects == 1
    events = await run_to_end(sub)
    kinds = [type(e) for e in events]
    assert Reconnected in kinds
    # Whatever ComfyUI sent during the gap is lost; the end of the run is not.
    assert events[-1] == Executing(prompt_id=prompt_id, node=None)
    assert stream.stats.reconnects == 1
    assert (await client.get_history(prompt_id)).succeeded


async def greeted(events: Subscription) -> None:
    """Until the connect `status` (the one with `sid`): the server has the socket."""
    while (await next_of(events, Status)).sid is None:
        pass


async def test_backoff_against_dropped_sockets_grows_is_capped_and_resets_when_stable(
    comfyui_sim,
):
    clock = FakeClock()
    stream = EventStream(comfyui_sim.base_url, backoff=quick_backoff(clock=clock, stable_after=30))
    events = stream.listen()
    async with stream:
        delays = []
        for _ in range(4):
            await greeted(events)
            await comfyui_sim.drop_websockets()
            delays.append((await next_of(events, Disconnected)).retry_in)
        await greeted(events)
        clock.advance(31)  # the connection has now been up long enough
        await comfyui_sim.drop_websockets()
        after_stable = (await next_of(events, Disconnected)).retry_in
    assert delays == [0.01, 0.02, 0.04, 0.04]
    assert after_stable == 0.01
    assert stream.stats.reconnects == 4


async def test_stream_rides_out_a_server_that_refuses_connections(comfyui_sim, client):
    slept: asyncio.Queue[float] = asyncio.Queue()

    async def recorded_sleep(delay: float) -> None:
        await slept.put(delay)
        await asyncio.sleep(delay)

    stream = EventStream(
        comfyui_sim.base_url,
        backoff=quick_backoff(clock=FakeClock()),
        sleep=recorded_sleep,
    )
    events = stream.listen()
    async with stream:
        await greeted(events)
        await comfyui_sim.refuse_connections()
        await comfyui_sim.drop_websockets()
        delays = [await asyncio.wait_for(slept.get(), GUARD) for _ in range(4)]
        assert stream.stats.failed_attempts >= 3
        assert not stream.connected
        await comfyui_sim.accept_connections()
        await next_of(events, Reconnected)
        await greeted(events)
        # Back in business: a prompt submitted now is tracked to its end.
        prompt_id, sub = await submit(client, stream, slow(steps=1))
        assert (await run_to_end(sub))[-1] == Executing(prompt_id=prompt_id, node=None)
    assert delays == [0.01, 0.02, 0.04, 0.04]


@pytest.mark.parametrize(
    ("flags", "frame_type"), [(None, 1), ({"supports_preview_metadata": True}, 4)]
)
async def test_binary_previews_and_texts_are_decoded(comfyui_sim, client, flags, frame_type):
    prompt = workflow("slow_progress_preview_text")
    prompt["2"]["inputs"]["nonce"] = random.randrange(2**31)
    stream = EventStream(comfyui_sim.base_url, feature_flags=flags, backoff=quick_backoff())
    async with stream:
        prompt_id, sub = await submit(client, stream, prompt)
        events = await run_to_end(sub)
    previews = [e for e in events if isinstance(e, PreviewImage)]
    texts = [e for e in events if isinstance(e, ProgressText)]
    assert previews
    assert all(p.frame_type == frame_type for p in previews)
    assert all(p.prompt_id == prompt_id for p in previews)
    assert all(p.image.startswith(PNG_MAGIC) or p.mime_type == "image/jpeg" for p in previews)
    assert [t.text for t in texts] == ["step 1/2", "step 2/2"]
    assert all(t.node_id == "2" for t in texts)


async def test_uploaded_image_feeds_a_workflow(client, stream, tmp_path: Path):
    _, sub = await submit(client, stream, slow(steps=1))
    (executed,) = [e for e in await run_to_end(sub) if isinstance(e, Executed)]
    png = await client.view_bytes(executed.files[0])

    uploaded = await client.upload_image(png, "comfyweb_input.png", overwrite=True)
    assert uploaded == FileRef("comfyweb_input.png", "", "input")
    prompt = workflow("load_invert_save")
    prompt["1"]["inputs"]["image"] = uploaded.filename
    prompt_id, sub = await submit(client, stream, prompt)
    assert isinstance((await run_to_end(sub))[-2], ExecutionSuccess)
    assert (await client.get_history(prompt_id)).succeeded


async def test_server_information_endpoints(client):
    stats = await client.system_stats()
    assert stats.comfyui_version
    assert stats.devices
    catalogue = await client.object_info()
    assert {"SlowProgress", "FailNode", "SaveImage", "KSampler"} <= set(catalogue)
    assert (await client.node_info("SlowProgress")) == catalogue["SlowProgress"]
    assert await client.node_info("NoSuchNode") is None
    assert "checkpoints" in await client.model_folders()
    assert all(isinstance(name, str) for name in await client.models("checkpoints"))
    assert await client.queue_remaining() == 0
    await client.free(unload_models=True)


async def test_view_errors_are_permanent(client):
    with pytest.raises(NotFound):
        await client.view_bytes(FileRef("no_such_file.png"))
    with pytest.raises(BadRequest):
        await client.view_bytes(FileRef("../escape.png"))


async def test_history_can_be_listed_and_cleared(client, stream):
    prompt_id, sub = await submit(client, stream, slow(steps=1))
    await run_to_end(sub)
    assert prompt_id in await client.get_histories(max_items=5)
    await client.clear_history()
    assert await client.get_histories() == {}
    await client.clear_queue()


async def test_server_errors_are_transient_and_clear_when_the_server_recovers(comfyui_sim, client):
    comfyui_sim.faults.http_status = 500
    with pytest.raises(ServerError) as caught:
        await client.submit(slow(steps=1))
    assert caught.value.retryable
    with pytest.raises(ServerError):
        await client.get_queue()
    comfyui_sim.faults.clear()
    assert (await client.get_queue()).remaining == 0


async def test_a_stalled_server_times_out(comfyui_sim):
    comfyui_sim.faults.stall()
    timeouts = Timeouts(connect=5, read=0.2, write=5, pool=5)
    try:
        async with ComfyUIClient(comfyui_sim.base_url, timeouts=timeouts) as impatient:
            with pytest.raises(ServerTimeout):
                await impatient.system_stats()
    finally:
        comfyui_sim.faults.release()


async def test_a_prompt_lost_in_a_crash_is_told_by_reconnect_and_reconciliation(
    comfyui_sim, client, stream
):
    prompt_id, sub = await submit(client, stream, slow(steps=2000))
    await next_of(sub, Progress)
    await comfyui_sim.crash()
    await comfyui_sim.start()
    await next_of(sub, Reconnected)
    # What the monitor does after any gap: neither queued nor in history -> lost.
    assert prompt_id not in (await client.get_queue()).prompt_ids()
    assert await client.get_history(prompt_id) is None
