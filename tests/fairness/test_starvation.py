"""A Low task under a steady stream of Urgent submissions starts (issue 18 item 3).

Real submission, real dispatch, a simulated ComfyUI with one slot and the real
monitor ending the prompts. The stream keeps Urgent work waiting the whole time,
so without aging the Low task would never start. With one level per R seconds it
reaches Urgent after 3R, is then the oldest task of the top level, and goes next.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import time

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from fairness import aging
from tasks.dispatch import dispatch_pending
from tasks.models import Priority, Status, Task
from tasks.submission import submit_runs
from tests.factories import make_team, make_user, trivial_graph
from tests.monitoring import simulator, wait_until, watching
from tests.simulator_thread import register
from workflows.templating import Run

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("sync_jobs", "own_dispatch_keys"),
    pytest.mark.timeout(180),
]

RATE = 1  # seconds per level: the Low task is at the top level after 3 s
BACKLOG = 4  # Urgent tasks the stream keeps waiting
STREAM_LIMIT = 90.0  # seconds the stream may run before the test calls it starvation


async def test_a_low_task_starts_under_a_steady_stream_of_urgent_work(
    tmp_path: pathlib.Path, settings
):
    settings.COMFYWEB_AGING_SECONDS_PER_LEVEL = RATE
    team = await sync_to_async(make_team)()
    user = await sync_to_async(make_user)(team=team)

    def submit(priority: int) -> Task:
        runs = [Run(trivial_graph(), {})]
        return submit_runs(team=team, submitter=user, runs=runs, priority=priority).tasks[0]

    def urgent_waiting() -> int:
        return Task.objects.filter(priority=Priority.URGENT, status=Status.PENDING).count()

    def low_dispatched(low: Task) -> bool:
        return Task.objects.filter(pk=low.pk, dispatched_at__isnull=False).exists()

    async with simulator(tmp_path / "comfyui") as sim:
        server = await sync_to_async(register)(sim, max_inflight=1)
        async with watching(server):
            for _ in range(BACKLOG):
                await sync_to_async(submit)(Priority.URGENT)
            low = await sync_to_async(submit)(Priority.LOW)
            stop = asyncio.Event()

            async def stream() -> int:
                """Top the Urgent backlog up as the server works through it."""
                sent = 0
                while not stop.is_set():
                    while await sync_to_async(urgent_waiting)() < BACKLOG:
                        await sync_to_async(submit)(Priority.URGENT)
                        sent += 1
                    await sync_to_async(dispatch_pending)()
                    await asyncio.sleep(0.05)
                return sent

            streaming = asyncio.create_task(stream())
            started = time.monotonic()
            try:
                await wait_until(
                    lambda: low_dispatched(low) or streaming.done(),
                    within=STREAM_LIMIT,
                    what="the Low task to start under the stream",
                )
            finally:
                stop.set()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(streaming, 30)
            streamed = streaming.result()
            elapsed = time.monotonic() - started

    low = await Task.objects.aget(pk=low.pk)
    assert low.dispatched_at is not None, f"starved: {streamed} Urgent tasks in {elapsed:.1f} s"
    # It jumped the stream: Urgent work submitted before it started was still waiting.
    overtaken = (
        await Task.objects.filter(priority=Priority.URGENT, created_at__lt=low.dispatched_at)
        .exclude(dispatched_at__lt=low.dispatched_at)
        .acount()
    )
    assert overtaken >= 1
    # It went only once aged to the top level, and then before everything submitted
    # after it: at most the pass that had already read the queue when it got there
    # sent a younger task first. (The backlog older than it may go first: those are
    # the tasks ahead of it that the bound adds.)
    top_at = low.created_at + timezone.timedelta(seconds=3 * RATE)
    assert aging.effective_priority_of(Priority.LOW, low.created_at, low.dispatched_at) == 3
    younger_sent_meanwhile = await Task.objects.filter(
        created_at__gt=low.created_at,
        dispatched_at__gt=top_at,
        dispatched_at__lt=low.dispatched_at,
    ).acount()
    assert younger_sent_meanwhile <= 1
    waited = (low.dispatched_at - low.created_at).total_seconds()
    # The figure for the README and the closing note: the wait against the bound.
    print(
        f"\nLow task waited {waited:.2f} s under {streamed} Urgent submissions; "
        f"bound 3R = {3 * RATE} s plus the prompt running when it got there"
    )
