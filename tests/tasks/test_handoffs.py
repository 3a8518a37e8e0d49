"""Hand-offs between processes survive a broker blip or a dead worker (issue #11, items 3 and 5).

The real monitor (in the test's loop) follows a simulated ComfyUI; the worker is
either django-q's sync mode or a real `qcluster` on a private Redis that the
test stops and starts again; a dispatcher that dies is a subprocess killed with
SIGKILL.
"""

from __future__ import annotations

import pathlib
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import close_old_connections
from django.utils import timezone

from servers.comfyui import ComfyUIClient
from servers.models import Server, ServerState
from tasks import dispatch, sweep
from tasks.execution import TaskEventHandler
from tasks.models import Output, Status, Task
from tests.django_process import DjangoProcess, shared_database
from tests.factories import make_task as make_pending
from tests.factories import make_team, shared_workflow
from tests.monitoring import simulator, wait_until, watching
from tests.private_redis import private_redis, redis_down
from tests.simulator_thread import register

pytestmark = pytest.mark.django_db(transaction=True)

NODES = ["EmptyImage", "SlowProgress", "SaveImage"]


def slow_graph(seconds: float) -> dict:
    """A graph that runs about `seconds` on the simulators here (time scale 0.1)."""
    graph = shared_workflow("slow_progress")
    graph["2"]["inputs"]["seconds_per_step"] = seconds * 10 / graph["2"]["inputs"]["steps"]
    return graph


def new_pending(graph: dict | None = None) -> Task:
    return make_pending(make_team(), graph=graph or shared_workflow("empty_save"))


async def capabilities_read(server: Server, since) -> None:
    """Until the monitor has read the server's nodes (and woken dispatch for it)."""
    await wait_until(
        lambda: ServerState.objects.filter(server=server, capabilities_at__gt=since).exists(),
        what="the server's capabilities read",
    )


async def prompts_of(sim) -> set[str]:
    async with ComfyUIClient(sim.base_url) as client:
        return set(await client.get_histories())


def completed_with_outputs(task_id: int) -> bool:
    return Task.objects.filter(pk=task_id, status=Status.COMPLETED, outputs__isnull=False).exists()


# -- item 3: output collection survives the broker being away at the moment of success --


@shared_database
async def test_outputs_are_collected_when_the_broker_was_down_as_the_prompt_succeeded(
    tmp_path: pathlib.Path,
):
    with private_redis() as redis:
        worker = DjangoProcess.manage(
            "qcluster",
            REDIS_URL=redis.url,
            COMFYWEB_DATA_DIR=str(tmp_path / "worker"),
            WORKER_PROCESSES="1",
        )
        try:
            worker.wait_for_line("running")  # "Q Cluster <name> running."
            async with simulator(tmp_path / "comfyui") as sim:
                server = await sync_to_async(register)(sim, node_classes=NODES)
                async with watching(server):
                    task = await sync_to_async(new_pending)(slow_graph(2.0))
                    # Sent by this pass or by the worker's own: a cluster that starts
                    # queues a dispatch pass (comfyweb.signals.cluster_started).
                    await sync_to_async(dispatch.dispatch_pending)()
                    await wait_until(
                        lambda: Task.objects.filter(pk=task.pk, status=Status.RUNNING).exists(),
                        what="the task running",
                    )
                    redis.stop()
                    # The monitor has seen it succeed (its final progress is written)
                    # while nothing could be queued.
                    await wait_until(
                        lambda: Task.objects.filter(
                            pk=task.pk, status=Status.RUNNING, progress_fraction=1.0
                        ).exists(),
                        what="the success, seen with the broker down",
                    )
                    redis.start()
                    await wait_until(
                        lambda: completed_with_outputs(task.pk),
                        within=60,
                        what="the outputs collected after the broker came back",
                    )
        finally:
            worker.stop()
    output = await Output.objects.aget(task_id=task.pk)
    assert (tmp_path / "worker" / "media" / output.file.name).exists()
    assert (await ServerState.objects.aget(server=server)).inflight == 0


@pytest.mark.usefixtures("own_dispatch_keys")
def test_a_success_is_noted_even_when_nothing_can_be_queued():
    task = make_pending(status=Status.RUNNING, prompt_id="p-1")
    with redis_down():
        assert sweep.request_collection(task.pk, "p-1", progress_fraction=1.0)
    task.refresh_from_db()
    assert task.collect_requested_at is not None
    assert task.progress_fraction == 1.0


@pytest.mark.usefixtures("own_dispatch_keys")
def test_an_overdue_collection_is_queued_again_at_a_growing_pace(enqueued):
    now = timezone.now()
    overdue = make_pending(status=Status.RUNNING, collect_requested_at=now - timedelta(seconds=6))
    make_pending(status=Status.RUNNING, collect_requested_at=now - timedelta(seconds=1))
    make_pending(status=Status.COMPLETED, collect_requested_at=now - timedelta(seconds=60))
    assert sweep.sweep(now) == {"collections": 1, "unsent": 0}
    assert enqueued == [(sweep.COLLECT_JOB, overdue.pk)]
    # Not again at the next tick: it waits as long as it has waited so far.
    assert sweep.sweep(now + timedelta(seconds=2)) == {"collections": 0, "unsent": 0}


@pytest.mark.usefixtures("own_dispatch_keys")
def test_a_lease_that_ran_out_has_its_server_asked_once_per_interval(sim_thread, enqueued):
    (sim,) = sim_thread.start(1)
    server = register(sim)
    past = timezone.now() - timedelta(seconds=1)
    make_pending(status=Status.DISPATCHED, server=server, prompt_id="p-1", sending_until=past)
    make_pending(status=Status.DISPATCHED, server=server, prompt_id="p-2", sending_until=past)
    assert sweep.sweep() == {"collections": 0, "unsent": 1}
    assert sweep.sweep() == {"collections": 0, "unsent": 0}
    assert enqueued == [(sweep.RECONCILE_JOB, server.pk)]


@pytest.mark.usefixtures("own_dispatch_keys")
def test_a_claim_is_leased_until_the_server_accepts_its_prompt(sim_thread):
    (sim,) = sim_thread.start(1)
    register(sim)
    task = make_pending()
    (claim,) = dispatch.claim_batch()
    assert Task.objects.get(pk=task.pk).sending_until > timezone.now()
    assert dispatch.settle(sim_thread.run(dispatch.send_all([claim])))
    assert Task.objects.get(pk=task.pk).sending_until is None


# -- item 5: retries are dispatched when their backoff ends ----------------------------


@pytest.mark.usefixtures("own_dispatch_keys", "sync_jobs")
async def test_a_retry_is_dispatched_when_its_backoff_ends(tmp_path: pathlib.Path):
    async with simulator(tmp_path / "comfyui") as sim:
        server = await sync_to_async(register)(sim, node_classes=NODES)
        registered = timezone.now()
        async with watching(server):
            # The monitor wakes dispatch once it has read the server's nodes: let
            # that pass, so that only the end of the backoff can wake it later.
            await capabilities_read(server, registered)
            task = await sync_to_async(new_pending)()
            sim.faults.http_status, sim.faults.failing_paths = 500, frozenset({"/prompt"})
            assert await sync_to_async(dispatch.dispatch_pending)() == 0
            sim.faults.clear()
            retried = await Task.objects.aget(pk=task.pk)
            assert retried.status == Status.PENDING
            assert retried.not_before > timezone.now()  # "retry in 1.x s"
            await wait_until(
                lambda: completed_with_outputs(task.pk), what="the retry dispatched and done"
            )
    done = await Task.objects.aget(pk=task.pk)
    assert done.attempts == 2
    assert done.dispatched_at >= retried.not_before


@pytest.mark.usefixtures("own_dispatch_keys")
async def test_the_handler_wakes_dispatch_when_the_next_backoff_ends(monkeypatch):
    woken: list[tuple] = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda *args, **kw: woken.append(args))
    await sync_to_async(make_pending)(not_before=timezone.now() + timedelta(seconds=0.5))
    handler = TaskEventHandler()
    await handler.tick()
    assert woken == []  # not yet over
    await wait_until(lambda: woken, within=10, what="dispatch woken at the backoff's end")
    assert woken == [("tasks.jobs.dispatch",)]


# -- item 5: a task claimed by a dispatcher that died before sending it -----------------

CLAIM_THEN_HANG = """
import sys, time
from tasks import dispatch
dispatch.LOCK_KEY = sys.argv[1]
for claim in dispatch.claim_batch():
    print("claimed", claim.task_id, claim.prompt_id, flush=True)
time.sleep(600)  # killed here: after its claims, before sending anything
"""


@shared_database
@pytest.mark.usefixtures("own_dispatch_keys", "sync_jobs")
async def test_a_task_whose_dispatcher_died_before_sending_it_runs_again_within_seconds(
    tmp_path: pathlib.Path,
):
    async with simulator(tmp_path / "comfyui") as sim:
        server = await sync_to_async(register)(sim, node_classes=NODES)
        registered = timezone.now()
        async with watching(server):
            await capabilities_read(server, registered)  # no wake-up from it later
            task = await sync_to_async(new_pending)()
            dispatcher = DjangoProcess.python(CLAIM_THEN_HANG, dispatch.LOCK_KEY)
            try:
                line = await sync_to_async(dispatcher.wait_for_line)("claimed ")
                _, claimed_id, lost_prompt = line.split()
            finally:
                dispatcher.kill()
            assert int(claimed_id) == task.pk
            await wait_until(
                lambda: completed_with_outputs(task.pk),
                within=30,
                what="the task sent again and completed",
            )
        prompts = await prompts_of(sim)
    done = await Task.objects.aget(pk=task.pk)
    assert done.attempts == 1  # the claim that never reached the server is not a run
    assert done.prompt_id != lost_prompt
    assert await done.events.filter(data__never_sent=True, to_status=Status.PENDING).aexists()
    assert (await ServerState.objects.aget(server=server)).inflight == 0
    assert prompts == {done.prompt_id}  # the lost claim's prompt never reached it


@pytest.mark.usefixtures("own_dispatch_keys")
def test_a_dispatcher_still_sending_keeps_its_lease(sim_thread, monkeypatch):
    monkeypatch.setattr(dispatch, "SEND_LEASE", 0.6)
    (sim,) = sim_thread.start(1)
    register(sim)
    task = make_pending()
    sim_thread.run(_call(sim.faults.stall))
    sender = threading.Thread(target=_dispatch_in_thread)
    sender.start()
    try:
        sim_thread.run(sim.faults.until_held(1))  # its POST is at the server, unanswered
        first = Task.objects.get(pk=task.pk).sending_until
        assert first is not None
        # Past the end of the lease it was claimed with, it is still live: renewed.
        poll_until(
            lambda: (
                timezone.now() > first
                and Task.objects.filter(pk=task.pk, sending_until__gt=timezone.now()).exists()
            ),
            what="the lease renewed past its first end",
        )
        assert sweep.sweep() == {"collections": 0, "unsent": 0}
    finally:
        sim_thread.run(_call(sim.faults.release))
        sender.join(timeout=30)
    accepted = Task.objects.get(pk=task.pk)
    assert accepted.status in Status.active()
    assert accepted.sending_until is None  # the server has it: no lease any more
    assert accepted.attempts == 1


async def _call(function) -> None:
    function()


def _dispatch_in_thread() -> None:
    try:
        dispatch.dispatch_pending()
    finally:
        close_old_connections()


def poll_until(condition: Callable[[], Any], *, what: str, within: float = 20.0) -> None:
    """A bound on waiting for another thread, not a timed assertion."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
