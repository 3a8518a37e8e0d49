"""Retries that know the error (issue 18 item 4), one test per class, end to end:
simulated ComfyUI servers inject the failure, dispatch and the real monitor meet
it, and the task's state, attempts, timeline and API error say what it was and
what was decided."""

from __future__ import annotations

import contextlib
import copy
import pathlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async

from servers.models import Server, ServerState
from servers.simulator import SimulatedComfyUI, SimulatorConfig
from tasks.cancel import cancel_task
from tasks.dispatch import dispatch_pending
from tasks.models import Status, Task, TaskEvent
from tests.api.callers import caller_for
from tests.factories import (
    CHECKPOINT,
    make_task,
    make_team,
    make_user,
    shared_workflow,
    trivial_graph,
)
from tests.monitoring import wait_until
from tests.monitoring import watching as watching_one
from tests.simulator_thread import TIME_SCALE, register

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("sync_jobs", "own_dispatch_keys"),
    pytest.mark.timeout(120),
]

NODES = ["EmptyImage", "SlowProgress", "SaveImage", "FailNode", "PreviewImage"]
NO_MODELS = {"checkpoints": [], "vae": [], "loras": []}
GIB = 1024**3


@contextlib.asynccontextmanager
async def simulators(tmp_path: pathlib.Path, *configs: SimulatorConfig) -> AsyncIterator[list]:
    sims = [
        SimulatedComfyUI("127.0.0.1", 0, data_dir=tmp_path / f"comfyui-{n}", config=config)
        for n, config in enumerate(configs)
    ]
    for sim in sims:
        await sim.start()
    try:
        yield sims
    finally:
        for sim in sims:
            await sim.stop()


@contextlib.asynccontextmanager
async def watching(*servers: Server) -> AsyncIterator[None]:
    """The real monitor, with every server's event stream connected."""
    async with watching_one(servers[0]) as monitor:
        await wait_until(
            lambda: all(
                s.pk in monitor.watchers and monitor.watchers[s.pk].stream_stats.connected
                for s in servers
            ),
            what="every server's event stream",
        )
        yield


async def busy(server: Server) -> None:
    """No slot to give for now (its slot count, which nothing but an operator changes:
    the in-flight count is corrected from the tasks on it)."""
    await Server.objects.filter(pk=server.pk).aupdate(max_inflight=0)


async def free(server: Server) -> None:
    await Server.objects.filter(pk=server.pk).aupdate(max_inflight=2)


def config(**fields: Any) -> SimulatorConfig:
    return SimulatorConfig(time_scale=TIME_SCALE, **fields)


async def registered(sim: SimulatedComfyUI, **state: Any) -> Server:
    """A healthy server whose cached capabilities say it has every catalogue node
    and the test checkpoint, whatever the simulator really has."""
    state.setdefault(
        "node_classes",
        [
            *NODES,
            "CheckpointLoaderSimple",
            "CLIPTextEncode",
            "EmptyLatentImage",
            "KSampler",
            "VAEDecode",
        ],
    )
    return await sync_to_async(register)(sim, **state)


async def submitted(graph: dict[str, Any], **fields: Any) -> tuple[Task, Any]:
    def make() -> tuple[Task, Any]:
        team = make_team()
        return make_task(team, graph=graph, **fields), make_user(team=team)

    return await database_sync_to_async(make)()


async def dispatched_until(condition: Callable[[], Any], what: str) -> Any:
    """Dispatch passes (as the worker's would after each backoff) until `condition`."""

    async def step() -> Any:
        await sync_to_async(dispatch_pending)()
        return await database_sync_to_async(condition)()

    return await wait_until(step, what=what, within=60)


def task_in(task: Task, *statuses: str) -> Callable[[], Task | None]:
    return lambda: Task.objects.filter(pk=task.pk, status__in=statuses).first()


def decisions(task: Task) -> list[dict[str, Any]]:
    return [
        event.data | {"message": event.message}
        for event in TaskEvent.objects.filter(task_id=task.pk, data__has_key="class").order_by(
            "at", "pk"
        )
    ]


def api_error(task: Task, user) -> dict[str, Any] | None:
    response = caller_for(user)("GET", f"tasks/{task.pk}")
    assert response.status_code == 200, response.content
    return response.json()["error"]


async def outcome(task: Task, user) -> tuple[Task, list[dict[str, Any]], dict | None]:
    return (
        await Task.objects.aget(pk=task.pk),
        await database_sync_to_async(decisions)(task),
        await database_sync_to_async(api_error)(task, user),
    )


async def test_a_validation_error_fails_at_once_and_is_never_retried(tmp_path):
    async with simulators(tmp_path, config()) as [sim]:
        await registered(sim)
        task, user = await submitted(shared_workflow("invalid_value_out_of_range"), max_attempts=3)
        await dispatched_until(task_in(task, *Status.finished()), "the rejected task to end")

    task, steps, error = await outcome(task, user)
    assert (task.status, task.attempts, task.error_class) == (Status.FAILED, 1, "validation")
    assert [s["class"] for s in steps] == ["validation"]
    assert steps[0]["decision"].startswith("not retried")
    assert error["class"] == "validation"
    assert error["type"] == "prompt_outputs_failed_validation"


async def test_a_missing_model_is_retried_only_on_a_server_that_has_it(tmp_path):
    async with simulators(tmp_path, config(models=copy.deepcopy(NO_MODELS)), config()) as sims:
        # The first server's checkpoint was deleted since its model list was read;
        # the second has it, and is busy when the task is first sent.
        stale, holder = await registered(sims[0]), await registered(sims[1])
        await busy(holder)
        # Sent before the monitor starts: it would read the stale server's lists again.
        task, user = await submitted(trivial_graph())
        await dispatched_until(
            lambda: TaskEvent.objects.filter(task_id=task.pk, data__has_key="class").exists(),
            "the missing model to be met",
        )
        assert (await Task.objects.aget(pk=task.pk)).status == Status.PENDING
        async with watching(stale, holder):
            await free(holder)
            await dispatched_until(task_in(task, *Status.finished()), "the retry to finish")

    task, steps, error = await outcome(task, user)
    assert (task.status, task.attempts, task.server_id) == (Status.COMPLETED, 2, holder.pk)
    assert [s["class"] for s in steps] == ["missing_model"]
    assert f"checkpoints/{CHECKPOINT}" in steps[0]["decision"]
    assert holder.name in steps[0]["decision"]
    assert steps[0]["failed_server"] == stale.pk
    # What the server lacks is off its cached list: dispatch no longer offers it there.
    state = await ServerState.objects.aget(server=stale)
    assert CHECKPOINT not in state.model_files["checkpoints"]
    assert error is None  # it completed: no error left to show


async def test_a_missing_model_no_other_server_has_is_not_retried(tmp_path):
    async with simulators(tmp_path, config(models=copy.deepcopy(NO_MODELS))) as [sim]:
        await registered(sim)
        task, user = await submitted(trivial_graph())
        await dispatched_until(task_in(task, *Status.finished()), "the task to end")

    task, steps, error = await outcome(task, user)
    assert (task.status, task.attempts, task.error_class) == (Status.FAILED, 1, "missing_model")
    assert steps[0]["decision"] == (
        f"not retried: no other enabled server has checkpoints/{CHECKPOINT}"
    )
    assert error["class"] == "missing_model"
    assert error["type"] == "prompt_outputs_failed_validation"


async def test_out_of_memory_frees_the_server_and_retries_it_when_none_has_more_vram(tmp_path):
    async with simulators(tmp_path, config(vram=8 * GIB)) as [sim]:
        server = await registered(sim)
        sim.faults.out_of_memory_until_free = True
        async with watching(server):
            task, user = await submitted(shared_workflow("slow_progress"))
            await dispatched_until(task_in(task, *Status.finished()), "the task to end")
        freed = not sim.faults.out_of_memory_until_free

    task, steps, error = await outcome(task, user)
    assert (task.status, task.attempts, task.server_id) == (Status.COMPLETED, 2, server.pk)
    assert freed  # ComfyWeb's POST /free unloaded the models that held the VRAM
    assert [s["class"] for s in steps] == ["out_of_memory"]
    assert "torch.OutOfMemoryError" in steps[0]["reason"]
    assert steps[0]["decision"].startswith(f"retrying on {server.name} after /free")
    assert error is None


async def test_out_of_memory_prefers_a_server_with_more_free_vram(tmp_path):
    configs = (config(vram=4 * GIB), config(vram=24 * GIB))
    async with simulators(tmp_path, *configs) as sims:
        small, big = await registered(sims[0]), await registered(sims[1])
        sims[0].faults.out_of_memory_until_free = True
        async with watching(small, big):
            await wait_until(
                lambda: ServerState.objects.filter(vram_free__isnull=False).count() == 2,
                what="both servers' free VRAM read by the monitor",
            )
            # The big one is busy at first, so the small one gets the task.
            await busy(big)
            task, user = await submitted(shared_workflow("slow_progress"))
            await dispatched_until(
                lambda: TaskEvent.objects.filter(task_id=task.pk, data__has_key="class").exists(),
                "the task to run out of memory",
            )
            await free(big)
            await dispatched_until(task_in(task, *Status.finished()), "the retry to finish")

    task, steps, error = await outcome(task, user)
    assert (task.status, task.attempts, task.server_id) == (Status.COMPLETED, 2, big.pk)
    assert [s["class"] for s in steps] == ["out_of_memory"]
    assert f"more free VRAM than {small.name} ({big.name})" in steps[0]["decision"]
    assert error is None


async def test_a_node_error_fails_and_is_not_retried(tmp_path):
    async with simulators(tmp_path, config()) as [sim]:
        server = await registered(sim)
        async with watching(server):
            task, user = await submitted(shared_workflow("fail"), max_attempts=3)
            await dispatched_until(task_in(task, *Status.finished()), "the task to end")

    task, steps, error = await outcome(task, user)
    assert (task.status, task.attempts, task.error_class) == (Status.FAILED, 1, "node_error")
    assert steps[0]["decision"].startswith("not retried")
    assert error == {
        "type": "RuntimeError",
        "message": task.error_message,
        "node_id": "2",
        "class": "node_error",
    }


async def test_a_server_lost_mid_prompt_is_retried(tmp_path):
    async with simulators(tmp_path, config()) as [sim]:
        server = await registered(sim)
        async with watching(server):
            task, user = await submitted(long_running())
            await dispatched_until(task_in(task, Status.RUNNING), "the task to run")
            await sim.crash()  # killed mid-prompt: its queue and history are gone
            await sim.start()
            await wait_until(
                lambda: TaskEvent.objects.filter(task_id=task.pk, data__has_key="class").exists(),
                what="the lost prompt to be noticed",
            )
            await dispatched_until(task_in(task, *Status.finished()), "the retry to finish")

    task, steps, error = await outcome(task, user)
    assert (task.status, task.attempts) == (Status.COMPLETED, 2)
    assert [s["class"] for s in steps] == ["server_lost"]
    assert steps[0]["decision"] == "retrying, another server preferred"
    assert error is None


async def test_an_interrupt_we_sent_cancels_and_is_not_retried(tmp_path):
    async with simulators(tmp_path, config()) as [sim]:
        server = await registered(sim)
        async with watching(server):
            task, user = await submitted(long_running(), max_attempts=3)
            await dispatched_until(task_in(task, Status.RUNNING), "the task to run")
            await database_sync_to_async(cancel_task)(task.pk, by=None)
            await wait_until(task_in(task, *Status.finished()), what="the task to end")

    task, steps, error = await outcome(task, user)
    assert (task.status, task.attempts, task.error_class) == (Status.CANCELED, 1, "interrupted")
    assert [s["class"] for s in steps] == ["interrupted"]
    assert steps[0]["decision"] == "not retried: interrupted"
    assert error["class"] == "interrupted"


def long_running() -> dict[str, Any]:
    graph = shared_workflow("slow_progress")
    graph["2"]["inputs"] |= {"steps": 20, "seconds_per_step": 1.0}  # 2 s at the test scale
    return graph


async def test_a_node_class_the_server_lacks_is_a_missing_model_and_fails_when_none_has_it(
    tmp_path,
):
    async with simulators(tmp_path, config()) as [sim]:
        # Its cached catalogue lists a node class it does not have (a custom node removed).
        await registered(sim, node_classes=[*NODES, "NoSuchNode"])
        task, user = await submitted(shared_workflow("invalid_unknown_class"))
        await dispatched_until(task_in(task, *Status.finished()), "the task to end")

    task, steps, error = await outcome(task, user)
    assert (task.status, task.attempts, task.error_class) == (Status.FAILED, 1, "missing_model")
    assert steps[0]["decision"] == "not retried: no other enabled server has node NoSuchNode"
    assert error["class"] == "missing_model"
    state = await ServerState.objects.aget(server__base_url=sim.base_url)
    assert "NoSuchNode" not in state.node_classes


async def test_a_server_lost_on_the_last_attempt_fails_with_its_class_in_the_api(tmp_path):
    async with simulators(tmp_path, config()) as [sim]:
        server = await registered(sim)
        async with watching(server):
            task, user = await submitted(long_running(), max_attempts=1)
            await dispatched_until(task_in(task, Status.RUNNING), "the task to run")
            await sim.crash()
            await sim.start()
            await wait_until(task_in(task, *Status.finished()), what="the lost prompt to end it")

    task, steps, error = await outcome(task, user)
    assert (task.status, task.attempts, task.error_class) == (Status.FAILED, 1, "server_lost")
    assert [s["class"] for s in steps] == ["server_lost"]
    assert error["class"] == "server_lost"
    assert error["type"] == "PromptLost"
