"""The monitor's process dispatches itself: a wake-up there runs a pass in its
dispatch thread at once, with no job through the broker (issue 15)."""

from __future__ import annotations

import time

import pytest

from tasks import dispatch_here, enqueue
from tasks.models import Status, Task
from tests.factories import make_task
from tests.simulator_thread import register

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def dispatching_here(monkeypatch):
    thread = dispatch_here.DispatchThread()
    monkeypatch.setattr(enqueue, "_wake_here", None)
    thread.start()
    enqueue.dispatch_here(thread.wake)
    return thread


def test_a_wake_up_in_the_monitors_process_dispatches_without_a_job(
    sim_thread, enqueued, dispatching_here
):
    (sim,) = sim_thread.start(1)
    register(sim)
    task = make_task()

    enqueue.wake_dispatch()

    deadline = time.monotonic() + 30
    while Task.objects.get(pk=task.pk).status == Status.PENDING:
        assert time.monotonic() < deadline, "the dispatch thread never took the task"
        time.sleep(0.05)
    assert Task.objects.get(pk=task.pk).server is not None
    assert enqueued == []  # nothing went through the broker


def test_a_prompts_end_frees_its_slot_and_fills_it_from_the_dispatch_thread(
    sim_thread, enqueued, dispatching_here
):
    (sim,) = sim_thread.start(1)
    server = register(sim, max_inflight=1)
    ended = make_task(dispatched_to=server, status=Status.RUNNING)  # holds the only slot
    waiting = make_task()

    dispatching_here.prompt_ended(ended.pk, ended.prompt_id)

    deadline = time.monotonic() + 30
    while Task.objects.get(pk=waiting.pk).status == Status.PENDING:
        assert time.monotonic() < deadline, "the freed slot was never filled"
        time.sleep(0.05)
    assert Task.objects.get(pk=waiting.pk).server_id == server.pk
    assert not Task.objects.get(pk=ended.pk).slot_held
    assert enqueued == []
