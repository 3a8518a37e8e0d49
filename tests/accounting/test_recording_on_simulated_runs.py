"""GPU time recorded from real runs on a simulated ComfyUI, watched by the real monitor."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async

from accounting.models import ServerCost, Usage
from servers.models import Server
from tasks.cancel import cancel_task
from tasks.dispatch import dispatch_pending
from tasks.models import Status, Task
from tests.factories import make_task, make_team, make_user, shared_workflow
from tests.monitoring import simulator, wait_until, watching
from tests.servers.simulator.helpers import slow_prompt
from tests.simulator_thread import register

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("sync_jobs")]

NODES = ["EmptyImage", "SlowProgress", "SaveImage", "FailNode", "PreviewImage"]
# The stamps are milliseconds of the server's clock: the recorded span is theirs, exactly.
STAMP_RESOLUTION_S = 0.001


@dataclass
class Billed:
    task: Task
    server: Server
    usage: list[Usage]
    server_seconds: float  # execution_start to the prompt's last message, by the server


async def run_and_bill(
    tmp_path,
    graph: dict[str, Any],
    last_event: str,
    *,
    weight: float | None = None,
    meanwhile: Callable[[Task], Awaitable[None]] | None = None,
) -> Billed:
    """Dispatch one task of `graph` to a simulated ComfyUI, let the real monitor follow
    it to its end (doing `meanwhile` as it runs), and read what was billed."""
    async with simulator(tmp_path / "comfyui") as sim:

        def world() -> tuple[Task, Server]:
            server = register(sim, node_classes=NODES)
            if weight is not None:
                ServerCost.objects.create(server=server, weight=weight)
            team = make_team()
            return make_task(team, graph=graph, submitter=make_user(team=team)), server

        task, server = await sync_to_async(world)()
        async with watching(server):
            assert await sync_to_async(dispatch_pending)() == 1
            if meanwhile is not None:
                await meanwhile(task)
            await wait_until(lambda: finished(task.pk), what="the task to end")
            await wait_until(lambda: Usage.objects.filter(task_ref=task.pk).exists(), what="usage")
        task = await Task.objects.aget(pk=task.pk)
        seconds = await sync_to_async(server_span_seconds)(sim.base_url, task.prompt_id, last_event)
    usage = [row async for row in Usage.objects.filter(task_ref=task.pk)]
    return Billed(task, server, usage, seconds)


def server_span_seconds(base_url: str, prompt_id: str, last_event: str) -> float:
    """The run as the server's own clock tells it: execution_start to `last_event`."""
    entry = httpx.get(f"{base_url}/history/{prompt_id}", timeout=10).json()[prompt_id]
    stamps = {name: data["timestamp"] for name, data in entry["status"]["messages"]}
    return (stamps[last_event] - stamps["execution_start"]) / 1000


def finished(task_id: int) -> bool:
    return Task.objects.filter(pk=task_id, status__in=Status.finished()).exists()


async def test_a_completed_run_records_the_seconds_its_events_span_times_the_weight(tmp_path):
    # 10 steps of 1 s, at the simulator's time scale: about a second on the server.
    billed = await run_and_bill(tmp_path, slow_prompt(10, 1.0), "execution_success", weight=2.5)

    task, (usage,) = billed.task, billed.usage
    assert task.status == Status.COMPLETED
    assert usage.attempt == 1
    assert usage.outcome == Status.COMPLETED
    assert billed.server_seconds > 0.5
    assert usage.seconds == pytest.approx(billed.server_seconds, abs=STAMP_RESOLUTION_S)
    assert usage.weight == 2.5
    assert usage.gpu_seconds == pytest.approx(usage.seconds * 2.5)
    assert usage.server_id == billed.server.pk
    assert usage.team_id == task.team_id
    assert usage.user_id == task.submitter_id
    # Collection of the outputs came after the prompt ended, and is not billed.
    assert usage.ended <= task.finished_at


async def test_a_failed_run_counts_the_time_it_ran(tmp_path):
    billed = await run_and_bill(tmp_path, shared_workflow("fail"), "execution_error")

    (usage,) = billed.usage
    assert billed.task.status == Status.FAILED
    assert usage.outcome == Status.FAILED
    assert usage.seconds == pytest.approx(billed.server_seconds, abs=STAMP_RESOLUTION_S)
    assert usage.gpu_seconds == pytest.approx(usage.seconds)  # no weight set: 1.0


async def test_a_run_canceled_while_running_counts_up_to_its_interrupt(tmp_path):
    async def cancel_after_a_few_steps(task: Task) -> None:
        await wait_until(
            lambda: Task.objects.filter(pk=task.pk, progress_value__gte=3).exists(),
            what="a few steps done",
        )
        await sync_to_async(cancel_task)(task.pk, by=None)

    billed = await run_and_bill(
        tmp_path,
        slow_prompt(200, 1.0),
        "execution_interrupted",
        meanwhile=cancel_after_a_few_steps,
    )

    (usage,) = billed.usage
    assert billed.task.status == Status.CANCELED
    assert usage.outcome == Status.CANCELED
    assert usage.seconds == pytest.approx(billed.server_seconds, abs=STAMP_RESOLUTION_S)
    # It ran a few of its 200 steps (20 s at the time scale), not all of them.
    assert 0.2 < usage.seconds < 10
