"""Hand-offs between processes survive a broker blip (issue #11, item 3); retries
are dispatched when their backoff ends (item 5).

The real monitor (in the test's loop) follows a simulated ComfyUI; the worker is
either django-q's sync mode or a real `qcluster` on a private Redis that the
test stops and starts again.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone
from django_q.conf import Conf

from servers.models import Server, ServerState
from servers.monitor.monitor import Monitor
from tasks import dispatch, sweep
from tasks.execution import TaskEventHandler
from tasks.models import Output, Status, Task
from tests.django_process import DjangoProcess, shared_database
from tests.factories import make_team
from tests.private_redis import private_redis, redis_down
from tests.servers.monitor.conftest import wait_until
from tests.tasks.queue_factories import (  # noqa: F401 - the *_fixture names are fixtures
    enqueued_fixture,
    make_live_server,
    own_dispatch_keys_fixture,
)
from tests.tasks.queue_factories import make_task as make_pending
from tests.tasks.task_factories import simulator, workflow

pytestmark = pytest.mark.django_db(transaction=True)

NODES = ["EmptyImage", "SlowProgress", "SaveImage"]


@pytest.fixture
def sync_jobs(monkeypatch, settings, tmp_path):
    """Jobs run inline (django-q sync mode); stored files go to a temp media root."""
    monkeypatch.setattr(Conf, "SYNC", True)
    settings.MEDIA_ROOT = tmp_path / "media"


@contextlib.asynccontextmanager
async def watching(server: Server) -> AsyncIterator[Monitor]:
    """The real monitor, with the tasks' handler, following `server` until the block ends."""
    monitor = Monitor(
        handler=TaskEventHandler(), tick=0.3, heartbeat=False, on_visible_change=lambda _: None
    )
    stop = asyncio.Event()
    running = asyncio.create_task(monitor.run(stop))
    try:
        await wait_until(
            lambda: (
                server.pk in monitor.watchers and monitor.watchers[server.pk].stream_stats.connected
            ),
            what="the monitor's event stream",
        )
        yield monitor
    finally:
        stop.set()
        await running


def slow_graph(seconds: float) -> dict:
    """A graph that runs about `seconds` on the simulators here (time scale 0.1)."""
    graph = workflow("slow_progress")
    graph["2"]["inputs"]["seconds_per_step"] = seconds * 10 / graph["2"]["inputs"]["steps"]
    return graph


def new_pending(graph: dict | None = None) -> Task:
    return make_pending(make_team(), graph=graph or workflow("empty_save"))


async def capabilities_read(server: Server, since) -> None:
    """Until the monitor has read the server's nodes (and woken dispatch for it)."""
    await wait_until(
        lambda: ServerState.objects.filter(server=server, capabilities_at__gt=since).exists(),
        what="the server's capabilities read",
    )


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
                server = await sync_to_async(make_live_server)(sim.base_url, node_classes=NODES)
                async with watching(server):
                    task = await sync_to_async(new_pending)(slow_graph(2.0))
                    assert await sync_to_async(dispatch.dispatch_pending)() == 1
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
    assert sweep.sweep(now) == {"collections": 1}
    assert enqueued == [(sweep.COLLECT_JOB, overdue.pk)]
    # Not again at the next tick: it waits as long as it has waited so far.
    assert sweep.sweep(now + timedelta(seconds=2)) == {"collections": 0}


# -- item 5: retries are dispatched when their backoff ends ----------------------------


@pytest.mark.usefixtures("own_dispatch_keys", "sync_jobs")
async def test_a_retry_is_dispatched_when_its_backoff_ends(tmp_path: pathlib.Path):
    async with simulator(tmp_path / "comfyui") as sim:
        server = await sync_to_async(make_live_server)(sim.base_url, node_classes=NODES)
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
