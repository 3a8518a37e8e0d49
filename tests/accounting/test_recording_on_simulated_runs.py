"""GPU time recorded from real runs on a simulated ComfyUI, watched by the real monitor."""

from __future__ import annotations

import httpx
import pytest
from asgiref.sync import sync_to_async

from accounting.models import ServerCost, Usage
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


def server_span_seconds(base_url: str, prompt_id: str, last_event: str) -> float:
    """The run as the server's own clock tells it: execution_start to `last_event`."""
    entry = httpx.get(f"{base_url}/history/{prompt_id}", timeout=10).json()[prompt_id]
    stamps = {name: data["timestamp"] for name, data in entry["status"]["messages"]}
    return (stamps[last_event] - stamps["execution_start"]) / 1000


def finished(task_id: int) -> bool:
    return Task.objects.filter(pk=task_id, status__in=Status.finished()).exists()


async def test_a_completed_run_records_the_seconds_its_events_span_times_the_weight(tmp_path):
    async with simulator(tmp_path / "comfyui") as sim:

        def world() -> Task:
            server = register(sim, node_classes=NODES)
            ServerCost.objects.create(server=server, weight=2.5)
            team = make_team()
            user = make_user(team=team)
            # 10 steps of 1 s, at the simulator's time scale: about a second on the server.
            return make_task(team, graph=slow_prompt(10, 1.0), submitter=user), server

        task, server = await sync_to_async(world)()
        async with watching(server):
            assert await sync_to_async(dispatch_pending)() == 1
            await wait_until(lambda: finished(task.pk), what="the task to finish")
            await wait_until(lambda: Usage.objects.filter(task_ref=task.pk).exists(), what="usage")
        task = await Task.objects.aget(pk=task.pk)
        expected = await sync_to_async(server_span_seconds)(
            sim.base_url, task.prompt_id, "execution_success"
        )

    assert task.status == Status.COMPLETED
    rows = [row async for row in Usage.objects.filter(task_ref=task.pk)]
    assert len(rows) == 1
    usage = rows[0]
    assert usage.attempt == 1
    assert usage.outcome == Status.COMPLETED
    assert expected > 0.5
    assert usage.seconds == pytest.approx(expected, abs=STAMP_RESOLUTION_S)
    assert usage.weight == 2.5
    assert usage.gpu_seconds == pytest.approx(usage.seconds * 2.5)
    assert usage.server_id == server.pk
    assert usage.team_id == task.team_id
    # Collection of the outputs came after the prompt ended, and is not billed.
    assert usage.ended <= task.finished_at


async def test_a_failed_run_counts_the_time_it_ran(tmp_path):
    async with simulator(tmp_path / "comfyui") as sim:

        def world():
            server = register(sim, node_classes=NODES)
            return make_task(make_team(), graph=shared_workflow("fail")), server

        task, server = await sync_to_async(world)()
        async with watching(server):
            assert await sync_to_async(dispatch_pending)() == 1
            await wait_until(lambda: finished(task.pk), what="the task to fail")
            await wait_until(lambda: Usage.objects.filter(task_ref=task.pk).exists(), what="usage")
        task = await Task.objects.aget(pk=task.pk)
        expected = await sync_to_async(server_span_seconds)(
            sim.base_url, task.prompt_id, "execution_error"
        )

    assert task.status == Status.FAILED
    usage = await Usage.objects.aget(task_ref=task.pk)
    assert usage.outcome == Status.FAILED
    assert usage.seconds == pytest.approx(expected, abs=STAMP_RESOLUTION_S)
    assert usage.gpu_seconds == pytest.approx(usage.seconds)  # no weight set: 1.0


async def test_a_run_canceled_while_running_counts_up_to_its_interrupt(tmp_path):
    async with simulator(tmp_path / "comfyui") as sim:

        def world():
            server = register(sim, node_classes=NODES)
            team = make_team()
            return make_task(team, graph=slow_prompt(200, 1.0)), make_user(team=team), server

        task, user, server = await sync_to_async(world)()
        async with watching(server):
            assert await sync_to_async(dispatch_pending)() == 1
            await wait_until(
                lambda: Task.objects.filter(pk=task.pk, progress_value__gte=3).exists(),
                what="a few steps done",
            )
            await sync_to_async(cancel_task)(task.pk, by=user)
            await wait_until(lambda: finished(task.pk), what="the task to be canceled")
            await wait_until(lambda: Usage.objects.filter(task_ref=task.pk).exists(), what="usage")

        task = await Task.objects.aget(pk=task.pk)
        expected = await sync_to_async(server_span_seconds)(
            sim.base_url, task.prompt_id, "execution_interrupted"
        )

    assert task.status == Status.CANCELED
    usage = await Usage.objects.aget(task_ref=task.pk)
    assert usage.outcome == Status.CANCELED
    assert usage.seconds == pytest.approx(expected, abs=STAMP_RESOLUTION_S)
    # It ran a few of its 200 steps (20 s at the time scale), not all of them.
    assert 0.2 < usage.seconds < 10
