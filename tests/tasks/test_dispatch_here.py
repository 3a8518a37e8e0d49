"""The monitor's process dispatches itself: a wake-up there runs a pass in its
dispatch thread at once, with no job through the broker (issue 15)."""

from __future__ import annotations

import time

import pytest

from servers.comfyui import events
from tasks import dispatch_here, enqueue
from tasks.execution import TaskEventHandler
from tasks.models import Status, Task
from tests.factories import make_task
from tests.simulator_thread import register

pytestmark = pytest.mark.django_db(transaction=True)


def claimed(task: Task, never: str) -> Task:
    """The task once dispatch has claimed it (the dispatch thread runs on its own)."""
    deadline = time.monotonic() + 30
    while (task := Task.objects.get(pk=task.pk)).status == Status.PENDING:
        assert time.monotonic() < deadline, never
        time.sleep(0.05)
    return task


@pytest.fixture
def dispatching_here(monkeypatch):
    thread = dispatch_here.DispatchThread()
    monkeypatch.setattr(enqueue, "_wake_here", None)
    monkeypatch.setattr(dispatch_here, "_thread", thread)  # as `start` leaves it
    thread.start()
    enqueue.dispatch_here(thread.wake)
    yield thread
    thread.stop()  # before the database is flushed under it


@pytest.fixture
def full_server(sim_thread):
    """A simulated server whose only slot a running task holds, and a task waiting."""
    (sim,) = sim_thread.start(1)
    server = register(sim, max_inflight=1)
    ended = make_task(dispatched_to=server, status=Status.RUNNING)
    return server, ended, make_task()


def test_a_wake_up_in_the_monitors_process_dispatches_without_a_job(
    sim_thread, enqueued, dispatching_here
):
    (sim,) = sim_thread.start(1)
    register(sim)
    task = make_task()

    enqueue.wake_dispatch()

    assert claimed(task, "the dispatch thread never took the task").server is not None
    assert enqueued == []  # nothing went through the broker


def test_a_prompts_end_frees_its_slot_and_fills_it_from_the_dispatch_thread(
    full_server, enqueued, dispatching_here
):
    server, ended, waiting = full_server

    dispatching_here.prompt_ended(ended.prompt_id)

    assert claimed(waiting, "the freed slot was never filled").server_id == server.pk
    assert not Task.objects.get(pk=ended.pk).slot_held
    assert enqueued == []


def test_a_prompts_end_is_handed_to_dispatch_as_it_arrives_before_its_events_are_handled(
    full_server, enqueued, dispatching_here
):
    server, ended, waiting = full_server
    handler = TaskEventHandler()

    # Only the arrival hook hears of them: `handle` has not got to this prompt.
    handler.arrived(server.pk, events.ExecutionSuccess(prompt_id=ended.prompt_id))
    handler.arrived(server.pk, events.Executing(node=None, prompt_id=ended.prompt_id))

    assert claimed(waiting, "the freed slot was never filled").server_id == server.pk
    assert not Task.objects.get(pk=ended.pk).slot_held
    assert Task.objects.get(pk=ended.pk).status == Status.RUNNING  # `handle` moves it on


def test_only_a_prompt_that_succeeded_is_handed_over_as_its_end_arrives(monkeypatch):
    thread = dispatch_here.DispatchThread()  # not started: what it is handed stays queued
    monkeypatch.setattr(dispatch_here, "_thread", thread)
    handler = TaskEventHandler()

    # A failed prompt keeps its slot until `handle` fails the task; one that succeeded
    # on another server is handed over; so is the next that succeeds on the first.
    handler.arrived(1, events.ExecutionError(prompt_id="failed"))
    handler.arrived(2, events.ExecutionSuccess(prompt_id="elsewhere"))
    handler.arrived(1, events.Executing(node=None, prompt_id="failed"))
    handler.arrived(2, events.Executing(node=None, prompt_id="elsewhere"))
    handler.arrived(1, events.ExecutionSuccess(prompt_id="next"))
    handler.arrived(1, events.Executing(node="3", prompt_id="next"))  # a node, not the end
    assert list(thread._ended) == ["elsewhere"]
    handler.arrived(1, events.Executing(node=None, prompt_id="next"))
    assert list(thread._ended) == ["elsewhere", "next"]
