"""The handler in place: dispatch sends a task, the real monitor feeds its events (A6, A8)."""

from __future__ import annotations

import asyncio
import pathlib
import time

import pytest
from asgiref.sync import sync_to_async

from tasks.dispatch import dispatch_pending
from tasks.models import Output, Status, Task
from tests.factories import make_task, make_team, shared_workflow
from tests.monitoring import simulator, watching
from tests.simulator_thread import register

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("sync_jobs")]

NODES = ["EmptyImage", "SlowProgress", "SaveImage", "FailNode", "PreviewImage"]


async def wait_for(condition, what: str, within: float = 20.0):
    """Poll a sync (ORM) condition until it holds; fail after `within` seconds."""
    check = sync_to_async(condition)
    deadline = time.monotonic() + within
    while not (result := await check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
    return result


async def test_dispatched_tasks_complete_and_fail_through_the_running_monitor(
    tmp_path: pathlib.Path,
):
    async with simulator(tmp_path / "comfyui") as sim:
        server = await sync_to_async(register)(sim, node_classes=NODES)
        async with watching(server):

            def submit() -> list[Task]:
                team = make_team()
                return [
                    make_task(team, status=Status.PENDING, graph=shared_workflow(name))
                    for name in ("slow_progress", "fail")
                ]

            ok, bad = await sync_to_async(submit)()
            assert await sync_to_async(dispatch_pending)() == 2
            await wait_for(
                lambda: (
                    Task.objects.filter(
                        pk__in=[ok.pk, bad.pk], status__in=Status.finished()
                    ).count()
                    == 2
                ),
                "both tasks to finish",
            )

    ok, bad = await Task.objects.aget(pk=ok.pk), await Task.objects.aget(pk=bad.pk)
    assert ok.status == Status.COMPLETED
    assert ok.progress_fraction == 1.0
    assert await Output.objects.filter(task=ok, content_type="image/png").aexists()
    assert bad.status == Status.FAILED
    assert bad.error_node == "2"
    changes = [e.to_status async for e in ok.events.exclude(to_status="")]
    assert changes[-3:] == [Status.DISPATCHED, Status.RUNNING, Status.COMPLETED]
