"""The monitor's handler fed real event sequences from a simulated ComfyUI (A6, A8)."""

from __future__ import annotations

import asyncio
import pathlib
import re
from collections.abc import Awaitable, Callable

import pytest
from asgiref.sync import sync_to_async
from PIL import Image

from servers.comfyui import (
    ComfyUIClient,
    Event,
    EventStream,
    ExecutionStart,
    PreviewImage,
    Progress,
    Reconnected,
)
from servers.models import ServerState
from tasks import enqueue, execution, previews
from tasks.execution import TaskEventHandler
from tasks.models import Output, Status, Task
from tests.factories import make_server, make_task, shared_workflow
from tests.monitoring import simulator
from tests.servers.comfyui.fakes import PromptEvents

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("sync_jobs")]

type OnEvent = Callable[[Event, ComfyUIClient], Awaitable[None]]


@pytest.fixture
async def sim(tmp_path: pathlib.Path):
    async with simulator(tmp_path / "comfyui") as started:
        yield started


async def run_task(
    sim, task: Task, handler: TaskEventHandler, on_event: OnEvent | None = None
) -> list[Event]:
    """POST the task's prompt as dispatch would and feed every event to the handler."""
    client_id = await sync_to_async(lambda: task.server.client_id)()
    stream = EventStream(sim.base_url, client_id)
    seen: list[Event] = []
    await stream.start()
    try:
        async with asyncio.timeout(30):
            await stream.wait_connected()
            events = PromptEvents(stream, task.prompt_id)
            async with ComfyUIClient(sim.base_url) as client:
                await client.submit(task.graph, client_id=client_id, prompt_id=task.prompt_id)
                async for event in events:
                    seen.append(event)
                    await handler.handle(task.server_id, event)
                    if on_event is not None:
                        await on_event(event, client)
            await handler.flush()
    finally:
        await stream.close()
    return seen


async def dispatched_task(sim, graph: dict, **fields) -> Task:
    def build() -> Task:
        server = make_server(base_url=sim.base_url)
        return Task.objects.select_related("server").get(
            pk=make_task(dispatched_to=server, graph=graph, **fields).pk
        )

    return await sync_to_async(build)()


async def reload(task: Task) -> Task:
    return await Task.objects.select_related("server").aget(pk=task.pk)


async def test_a_successful_run_goes_running_then_completed_with_its_png_stored(sim):
    task = await dispatched_task(sim, shared_workflow("slow_progress"))
    await run_task(sim, task, TaskEventHandler())

    task = await reload(task)
    assert task.status == Status.COMPLETED
    assert task.started_at is not None
    assert task.finished_at >= task.started_at
    assert task.progress_fraction == 1.0
    assert task.progress_node == "3"
    assert task.progress_node_type == "SaveImage"
    steps = [e.to_status or e.message async for e in task.events.all()]
    # Its run by the server's own clock, noted for GPU-time accounting.
    assert re.fullmatch(r"ran \d+\.\d\d s by the server's clock", steps.pop(2))
    assert steps == [
        Status.DISPATCHED,
        Status.RUNNING,
        # Its slot went back when the prompt was done, before the outputs came.
        "prompt done on the server: its slot is free, outputs are being collected",
        Status.COMPLETED,
    ]

    outputs = [o async for o in Output.objects.filter(task=task)]
    assert len(outputs) == 1
    output = outputs[0]
    assert output.content_type == "image/png"
    assert output.node_id == "3"
    assert (output.width, output.height) == (64, 64)
    assert output.file.name.startswith(f"outputs/team-{task.team_id}/")
    assert output.original_name.startswith("comfyweb_slow")
    with Image.open(output.file.path) as image:
        assert image.format == "PNG"
    with Image.open(output.thumbnail.path) as thumb:
        assert thumb.format == "WEBP"
    assert output.metadata["server_id"] == task.server_id
    assert output.metadata["node_class"] == "SaveImage"
    # The slot it held on the server is free again.
    assert (await ServerState.objects.aget(server_id=task.server_id)).inflight == 0


async def test_every_output_of_a_batch_is_stored_under_its_own_generated_name(sim):
    task = await dispatched_task(sim, shared_workflow("batch2_two_outputs"))
    await run_task(sim, task, TaskEventHandler())

    task = await reload(task)
    assert task.status == Status.COMPLETED
    names = [o.file.name async for o in Output.objects.filter(task=task)]
    assert len(names) >= 2
    assert len(set(names)) == len(names)


async def test_a_node_that_raises_fails_the_task_with_node_type_and_message(sim):
    task = await dispatched_task(sim, shared_workflow("fail"))
    await run_task(sim, task, TaskEventHandler())

    task = await reload(task)
    assert task.status == Status.FAILED
    assert task.error_node == "2"
    assert "comfyweb test failure" in task.error_message
    assert task.error_type
    assert task.finished_at is not None
    assert not await Output.objects.filter(task=task).aexists()
    last = await task.events.alast()
    assert last.to_status == Status.FAILED
    assert "FailNode" in last.message


def slow_graph(steps: int = 40) -> dict:
    graph = shared_workflow("slow_progress")
    graph["2"]["inputs"].update(steps=steps, seconds_per_step=0.5)
    return graph


async def _interrupt_once_progressing(event: Event, client: ComfyUIClient) -> None:
    if isinstance(event, Progress) and event.value == 1:
        await client.interrupt(event.prompt_id)


async def test_an_interrupt_we_asked_for_ends_the_task_canceled(sim):
    task = await dispatched_task(sim, slow_graph(), cancel_requested=True)
    await run_task(sim, task, TaskEventHandler(), _interrupt_once_progressing)

    task = await reload(task)
    assert task.status == Status.CANCELED
    last = await task.events.alast()
    assert last.message == "Interrupted on request"


async def test_an_interrupt_nobody_asked_for_is_canceled_by_the_server(sim):
    task = await dispatched_task(sim, slow_graph())
    await run_task(sim, task, TaskEventHandler(), _interrupt_once_progressing)

    task = await reload(task)
    assert task.status == Status.CANCELED
    last = await task.events.alast()
    assert "did not ask" in last.message


async def test_progress_is_in_the_database_while_the_task_runs(sim):
    task = await dispatched_task(sim, slow_graph(steps=6))
    handler = TaskEventHandler()
    snapshots: list[tuple[str, str, int, int]] = []

    async def look(event: Event, client: ComfyUIClient) -> None:
        if isinstance(event, Progress) and event.value == event.max:
            await handler.flush()  # the trailing write the throttle holds back
            row = await Task.objects.aget(pk=task.pk)
            snapshots.append(
                (row.status, row.progress_node_type, row.progress_value, row.progress_max)
            )

    await run_task(sim, task, handler, look)
    assert snapshots
    assert snapshots[-1] == (Status.RUNNING, "SlowProgress", 6, 6)


async def test_events_of_prompts_that_are_not_ours_are_ignored(sim):
    task = await dispatched_task(sim, shared_workflow("empty_save"))
    handler = TaskEventHandler()
    await handler.handle(task.server_id, ExecutionStart(prompt_id="someone-elses"))
    await handler.handle(task.server_id + 1000, ExecutionStart(prompt_id=task.prompt_id))
    assert (await reload(task)).status == Status.DISPATCHED


async def test_a_reconnect_asks_for_the_server_to_be_reconciled(monkeypatch):
    queued = []
    monkeypatch.setattr(enqueue, "enqueue", lambda path, *args: queued.append((path, args)))
    event = Reconnected(url="ws://127.0.0.1:1/ws", downtime=1.0, reconnects=1)
    await TaskEventHandler().handle(7, event)
    assert queued == [(execution.RECONCILE_JOB, (7,))]


async def test_live_previews_are_kept_and_pushed_while_running_then_dropped(sim, monkeypatch):
    task = await dispatched_task(sim, shared_workflow("slow_progress_preview_text"))
    pushed, seen = [], []

    async def record(task_id: int) -> None:
        pushed.append(task_id)

    async def look(event: Event, client: ComfyUIClient) -> None:
        if isinstance(event, PreviewImage):
            seen.append(await sync_to_async(previews.latest)(task.pk))

    monkeypatch.setattr(execution.task_updates, "apublish_preview", record)
    await run_task(sim, task, TaskEventHandler(), look)

    assert seen
    assert all(latest is not None and latest[1] in previews.MIME_TYPES for latest in seen)
    assert pushed
    assert set(pushed) == {task.pk}
    assert await sync_to_async(previews.latest)(task.pk) is None
    assert (await reload(task)).status == Status.COMPLETED
