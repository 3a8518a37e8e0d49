"""A monitor dies mid-prompt; the one that takes its lease over ends the task (issue 17).

The prompt was sent with the dead monitor's client id, so its events went to that
monitor's socket and none reach the next one: the new holder has it reconciled from
/history and /queue as ComfyUI tells every socket its queue changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from servers.models import FleetSettings, ServerLease
from servers.monitor.monitor import Monitor
from tasks.dispatch import _server_info, dispatch_pending
from tasks.execution import TaskEventHandler
from tasks.models import Output, Status, Task
from tests.factories import make_server, make_task, make_team
from tests.monitoring import simulator, wait_until
from tests.servers.simulator.helpers import slow_prompt
from tests.simulator_thread import register

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("sync_jobs")]

NODES = ["EmptyImage", "SlowProgress", "SaveImage"]
LEASE_SECONDS = 1.0


@contextlib.asynccontextmanager
async def running(monitor: Monitor):
    stop = asyncio.Event()
    task = asyncio.create_task(monitor.run(stop))
    try:
        yield monitor
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def new_monitor() -> Monitor:
    return Monitor(
        handler=TaskEventHandler(),
        tick=0.3,
        heartbeat=False,
        on_visible_change=lambda _: None,
        lease_seconds=LEASE_SECONDS,
    )


def lease_holder(server_id: int) -> str:
    return ServerLease.objects.get(server_id=server_id).monitor_id


async def test_a_prompt_sent_under_a_lost_lease_ends_its_task_under_the_next_monitor(
    tmp_path: pathlib.Path,
):
    async with simulator(tmp_path / "comfyui") as sim:
        # The prompt's work waits at this gate until the lease has changed hands.
        gate = asyncio.Event()

        async def pace(client_id: str | None) -> None:
            await gate.wait()

        sim.config.pace = pace
        server = await sync_to_async(register)(sim, node_classes=NODES)
        first = new_monitor()
        async with running(first):
            await wait_until(
                lambda: (
                    server.pk in first.watchers and first.watchers[server.pk].stream_stats.connected
                ),
                what="the first monitor's stream",
            )
            graph = slow_prompt(3, 0.01, 626)
            task = await sync_to_async(lambda: make_task(make_team(), graph=graph))()
            assert await sync_to_async(dispatch_pending)() == 1
            await wait_until(
                lambda: Task.objects.get(pk=task.pk).status == Status.RUNNING,
                what="the task running (an event the first monitor heard)",
            )
            sent_with = (await Task.objects.aget(pk=task.pk)).client_id
            assert sent_with == first.watchers[server.pk].spec.client_id
            # It dies: its lease is not given back, only left to expire.
            first.leases.release = lambda: None

        second = new_monitor()
        async with running(second):
            await wait_until(
                lambda: lease_holder(server.pk) == second.monitor_id,
                what="the second monitor holding the server",
            )
            watcher = second.watchers[server.pk]
            await wait_until(lambda: watcher.stream_stats.connected, what="its stream")
            assert watcher.spec.client_id != sent_with
            gate.set()
            await wait_until(
                lambda: Task.objects.get(pk=task.pk).status in Status.finished(),
                what="the task ended",
            )

    task = await Task.objects.aget(pk=task.pk)
    assert task.status == Status.COMPLETED
    assert await Output.objects.filter(task=task).aexists()
    assert task.attempts == 1  # ran once: neither retried nor sent again
    assert len(sim.history.listing()) == 1  # one prompt on the server


def test_prompts_carry_the_lease_holders_client_id_even_while_its_renewal_is_late():
    server, never_leased = make_server(), make_server()
    late = timezone.now() - timedelta(seconds=30)
    lease = ServerLease.objects.create(server=server, monitor_id="monitor-1", expires_at=late)
    deployment_id = FleetSettings.load().deployment_id
    # Its holder is busy, not necessarily gone: it still watches with this id.
    assert _server_info(server.pk, deployment_id).client_id == lease.client_id
    assert _server_info(never_leased.pk, deployment_id).client_id == never_leased.client_id
