"""Progress folding and coalescing (A6): ≤10 browser updates/s per task, DB kept current."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from servers.comfyui import (
    Executed,
    Executing,
    ExecutionCached,
    ExecutionStart,
    NodeProgress,
    Progress,
    ProgressState,
)
from tasks import execution
from tasks.execution import TaskEventHandler
from tasks.models import Status, Task
from tasks.progress import Coalescer, Numbers, TaskProgress, node_title
from tests.clocks import FakeClock
from tests.factories import make_server, make_task, shared_workflow


def test_coalescer_lets_one_update_a_window_through_and_owes_one_trailing():
    clock = FakeClock()
    coalescer = Coalescer(0.1, clock)
    assert coalescer.offer("t") == 0.0
    clock.now += 0.03
    assert coalescer.offer("t") == pytest.approx(0.07)  # a trailing send is now due
    assert coalescer.offer("t") is None  # already due: nothing more to schedule
    clock.now += 0.07
    coalescer.sent("t")
    clock.now += 0.1
    assert coalescer.offer("t") == 0.0
    assert coalescer.offer("other") == 0.0  # keys are independent


def test_an_overdue_trailing_send_goes_with_the_next_update_when_its_timer_is_late():
    # A burst of events handled without a pause: the trailing timer cannot run, so
    # the first update after the window sends at once instead of waiting for it.
    clock = FakeClock()
    coalescer = Coalescer(0.1, clock)
    assert coalescer.offer("t") == 0.0
    clock.now += 0.03
    assert coalescer.offer("t") == pytest.approx(0.07)
    clock.now += 0.08  # past the window, the timer still not run
    assert coalescer.offer("t") == 0.0
    assert coalescer.offer("t") == pytest.approx(0.1)  # a new window, a new trailing


def test_coalescer_over_a_simulated_second_sends_at_most_ten():
    clock = FakeClock()
    coalescer = Coalescer(0.1, clock)
    sent, due_at = 0, None
    for _ in range(1000):  # an event every millisecond
        clock.now += 0.001
        if due_at is not None and clock.now >= due_at:
            coalescer.sent("t")
            sent, due_at = sent + 1, None
        delay = coalescer.offer("t")
        if delay == 0.0:
            sent += 1
        elif delay is not None:
            due_at = clock.now + delay
    assert 9 <= sent <= 11


def test_fraction_counts_done_nodes_and_the_current_nodes_steps():
    graph = shared_workflow("slow_progress")  # 3 nodes
    progress = TaskProgress(task_id=1, team_id=1, graph=graph)
    progress.apply(ExecutionCached(prompt_id="p", nodes=("1",)))
    assert progress.fraction == pytest.approx(1 / 3)
    progress.apply(Executing(prompt_id="p", node="2"))
    progress.apply(Progress(prompt_id="p", node="2", value=2, max=4))
    assert (progress.node_type, progress.value, progress.max) == ("SlowProgress", 2, 4)
    assert progress.fraction == pytest.approx((1 + 0.5) / 3)
    state = {
        "2": NodeProgress(node_id="2", state="finished", value=4, max=4),
        "3": NodeProgress(node_id="3", state="running", value=0, max=1),
    }
    progress.apply(ProgressState(prompt_id="p", nodes=state))
    assert progress.node == "3"
    assert progress.fraction == pytest.approx(2 / 3)


def test_numbers_say_which_node_which_step_and_how_far_overall():
    sampling = Numbers(nodes_done=1, nodes_total=3, value=38, max=150)
    assert sampling.fraction == pytest.approx((1 + 38 / 150) / 3)
    assert sampling.percent == 41  # 41.8: rounded down, as every display shows it
    assert sampling.summary(running=True) == "node 2 of 3 · step 38/150 · 41 % overall"
    assert sampling.summary(running=False) == "41 % overall"  # failed there, say
    assert (
        Numbers(nodes_done=2, nodes_total=3).summary(running=True) == "node 3 of 3 · 66 % overall"
    )
    # 100 % means it succeeded: never shown while the last step still runs.
    assert Numbers(nodes_done=2, nodes_total=3, value=149, max=150).percent == 99
    assert Numbers(nodes_done=3, nodes_total=3, complete=True).percent == 100


def test_a_finished_nodes_steps_are_not_counted_twice():
    progress = TaskProgress(task_id=1, team_id=1, graph=shared_workflow("slow_progress"))
    progress.apply(Executing(prompt_id="p", node="2"))
    progress.apply(Progress(prompt_id="p", node="2", value=4, max=4))
    finished = {"2": NodeProgress(node_id="2", state="finished", value=4, max=4)}
    progress.apply(ProgressState(prompt_id="p", nodes=finished))
    numbers = progress.numbers()
    assert (numbers.nodes_done, numbers.value, numbers.max) == (1, 0, 0)
    assert numbers.fraction == pytest.approx(1 / 3)


def test_node_title_prefers_the_editors_title_over_the_class():
    graph = {"5": {"class_type": "KSampler", "_meta": {"title": "Main sampler"}, "inputs": {}}}
    graph["6"] = {"class_type": "SaveImage", "inputs": {}}
    assert node_title(graph, "5") == "Main sampler"
    assert node_title(graph, "6") == "SaveImage"
    assert node_title(graph, "missing") == "missing"


@pytest.mark.django_db(transaction=True)
async def test_a_burst_of_progress_events_sends_one_update_now_and_one_trailing(monkeypatch):
    def build() -> Task:
        return make_task(dispatched_to=make_server(), graph=shared_workflow("slow_progress"))

    task = await sync_to_async(build)()
    sent, written = [], []

    async def record_publish(view):
        sent.append((view["value"], view["max"], view["status"]))

    monkeypatch.setattr(execution.task_updates, "apublish_progress", record_publish)
    real_save = execution._save_progress
    monkeypatch.setattr(
        execution, "_save_progress", lambda *a, **kw: (written.append(kw), real_save(*a, **kw))
    )
    clock = FakeClock()
    handler = TaskEventHandler(clock=clock)
    await handler.handle(task.server_id, ExecutionStart(prompt_id=task.prompt_id))
    await handler.handle(task.server_id, Executing(prompt_id=task.prompt_id, node="2"))
    for step in range(1, 101):  # all within one instant of the fake clock
        event = Progress(prompt_id=task.prompt_id, node="2", value=step, max=100)
        await handler.handle(task.server_id, event)
    assert sent == [(0, 0, Status.RUNNING)]  # the first change went out at once
    assert len(written) == 1

    await handler.flush()  # the trailing window ends: the latest state goes out
    assert sent[-1] == (100, 100, Status.RUNNING)
    assert len(sent) == 2
    row = await Task.objects.aget(pk=task.pk)
    assert (row.progress_node, row.progress_value, row.progress_max) == ("2", 100, 100)
    assert row.progress_node_type == "SlowProgress"


@pytest.mark.django_db(transaction=True)
async def test_outputs_reported_by_executed_are_recorded_in_progress():
    task = await sync_to_async(
        lambda: make_task(dispatched_to=make_server(), graph=shared_workflow("empty_save"))
    )()
    handler = TaskEventHandler()
    output = {"images": [{"filename": "a_00001_.png", "subfolder": "", "type": "output"}]}
    await handler.handle(
        task.server_id, Executed(prompt_id=task.prompt_id, node="2", output=output)
    )
    tracked = handler._tracked[(task.server_id, task.prompt_id)]
    assert tracked.progress.outputs == {"2": ["a_00001_.png"]}
    await handler.flush()
