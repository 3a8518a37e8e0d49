"""Cancel in each state, against real simulated servers."""

from __future__ import annotations

import asyncio

import pytest
from django.core.exceptions import PermissionDenied

from servers.comfyui import ComfyUIClient
from servers.models import ServerState
from servers.simulator import SimulatorConfig
from tasks import dispatch, outputs
from tasks.cancel import CANCELED, FINISHED, REQUESTED, UNREACHABLE, cancel_batch, cancel_task
from tasks.dispatch_send import send_all
from tasks.models import Batch, Status, Task, TaskEvent
from tasks.transitions import transition
from teams.models import Role
from tests.factories import make_task, make_team, make_user
from tests.simulator_thread import register

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("own_dispatch_keys")]

# KSampler takes 30 s: the first prompt runs while the next one waits in the queue.
SLOW = SimulatorConfig(time_scale=1.0, node_seconds={"KSampler": 30.0})


def server_queue(sims, sim) -> tuple[set[str], set[str]]:
    async def look():
        async with ComfyUIClient(sim.base_url) as client:
            queue = await client.get_queue()
        return {i.prompt_id for i in queue.running}, {i.prompt_id for i in queue.pending}

    return sims.run(look())


def wait_until_running(sims, sim, prompt_ids: set[str]) -> None:
    """Until one of `prompt_ids` runs (a bound on waiting, not a timed assertion)."""

    async def running():
        async with ComfyUIClient(sim.base_url) as client:
            while not prompt_ids & {i.prompt_id for i in (await client.get_queue()).running}:  # noqa: ASYNC110
                await asyncio.sleep(0.02)

    asyncio.run_coroutine_threadsafe(asyncio.wait_for(running(), 20), sims.loop).result()


def two_on_one_slow_server(sims):
    """Two tasks sent to one slow server: (sim, server, the running one, the queued one).

    Both POSTs go out concurrently, so which one the server runs first is its choice.
    """
    (sim,) = sims.start(1, config=SLOW)
    server = register(sim, max_inflight=2)
    tasks = [make_task(), make_task()]
    assert dispatch.dispatch_pending() == 2
    for task in tasks:
        task.refresh_from_db()
    wait_until_running(sims, sim, {task.prompt_id for task in tasks})
    running, _ = server_queue(sims, sim)
    first, second = sorted(tasks, key=lambda task: task.prompt_id not in running)
    return sim, server, first, second


def test_a_pending_task_is_canceled_at_once():
    task = make_task()
    assert cancel_task(task.pk, by=None) == CANCELED
    task.refresh_from_db()
    assert task.status == Status.CANCELED
    assert task.finished_at is not None


def test_a_dispatched_task_is_deleted_from_the_servers_queue_and_canceled(sim_thread):
    sim, server, _first, second = two_on_one_slow_server(sim_thread)
    assert second.prompt_id in server_queue(sim_thread, sim)[1]
    assert cancel_task(second.pk, by=None) == CANCELED
    second.refresh_from_db()
    assert second.status == Status.CANCELED
    assert second.prompt_id not in server_queue(sim_thread, sim)[1]
    assert ServerState.objects.get(server=server).inflight == 1  # its slot is free again


def test_a_running_task_is_interrupted_and_canceled_only_when_the_server_confirms(sim_thread):
    sim, server, first, second = two_on_one_slow_server(sim_thread)
    transition(first.pk, Status.DISPATCHED, Status.RUNNING, message="execution_start")
    assert cancel_task(first.pk, by=None) == REQUESTED
    first.refresh_from_db()
    assert first.status == Status.RUNNING
    assert first.cancel_requested
    # The targeted interrupt stopped ours and the next prompt went on running.
    wait_until_running(sim_thread, sim, {second.prompt_id})
    # execution_interrupted reaches the execution handler, which does this:
    assert transition(
        first.pk,
        Status.active(),
        Status.CANCELED,
        message="Interrupted on request",
        where={"prompt_id": first.prompt_id},
    )
    assert ServerState.objects.get(server=server).inflight == 1


def test_a_dispatched_task_that_already_started_is_interrupted(sim_thread):
    sim, _server, first, second = two_on_one_slow_server(sim_thread)
    assert first.status == Status.DISPATCHED  # no monitor here: it never heard of the start
    assert cancel_task(first.pk, by=None) == REQUESTED
    wait_until_running(sim_thread, sim, {second.prompt_id})
    assert Task.objects.get(pk=first.pk).cancel_requested


def test_a_finished_task_has_nothing_to_cancel():
    task = make_task(status=Status.COMPLETED)
    assert cancel_task(task.pk, by=None) == FINISHED
    assert Task.objects.get(pk=task.pk).status == Status.COMPLETED


def test_an_unreachable_server_leaves_the_request_for_reconciliation(sim_thread):
    (sim,) = sim_thread.start(1)
    server = register(sim)
    task = make_task(status=Status.RUNNING, server=server, prompt_id="p-1")
    sim_thread.run(sim.stop())
    assert cancel_task(task.pk, by=None) == UNREACHABLE
    task.refresh_from_db()
    assert task.cancel_requested
    assert task.status == Status.RUNNING


def test_a_task_canceled_while_its_prompt_was_being_sent_is_removed_from_the_server(sim_thread):
    (sim,) = sim_thread.start(1, config=SLOW)
    register(sim)
    task = make_task()
    claimed = dispatch.claim_batch()
    # The user cancels between the claim and the POST: nothing is on the server yet.
    assert cancel_task(task.pk, by=None) == CANCELED
    outcomes = asyncio.run(send_all(claimed))
    assert dispatch.settle(outcomes) == 1
    # Interrupting is asynchronous on the server; without it this 30 s prompt
    # would outlast the wait.
    sim_thread.wait_idle(sim, timeout=15)
    assert Task.objects.get(pk=task.pk).status == Status.CANCELED


def test_a_batch_is_canceled_task_by_task():
    team = make_team()
    batch = Batch.objects.create(team=team)
    pending = [make_task(team, batch=batch) for _ in range(3)]
    done = make_task(team, batch=batch, status=Status.COMPLETED)
    assert cancel_batch(batch.pk, by=make_user(team=team)) == {CANCELED: 3}
    assert {Task.objects.get(pk=t.pk).status for t in pending} == {Status.CANCELED}
    assert Task.objects.get(pk=done.pk).status == Status.COMPLETED


def test_viewers_and_other_teams_cannot_cancel():
    team = make_team()
    task = make_task(team)
    for user in (make_user(team=team, role=Role.VIEWER), make_user(team=make_team())):
        with pytest.raises(PermissionDenied):
            cancel_task(task.pk, by=user)
    assert Task.objects.get(pk=task.pk).status == Status.PENDING


def finished_on_the_server_before_we_heard(sims, *, status: str) -> Task:
    """A task whose prompt has ended on its server while we still think it is `status`.

    (The moment a user clicks cancel as the last step ends: the server is done,
    the monitor and output collection have not caught up yet.)
    """
    (sim,) = sims.start(1)
    register(sim)
    task = make_task()
    assert dispatch.dispatch_pending() == 1
    sims.wait_idle(sim)
    if status == Status.RUNNING:
        transition(task.pk, Status.DISPATCHED, Status.RUNNING, message="execution_start")
    return Task.objects.get(pk=task.pk)


@pytest.mark.parametrize("status", [Status.DISPATCHED, Status.RUNNING])
def test_a_cancel_that_arrives_after_the_prompt_ended_is_a_no_op_that_says_so(
    sim_thread, settings, tmp_path, status
):
    settings.MEDIA_ROOT = tmp_path / "media"
    task = finished_on_the_server_before_we_heard(sim_thread, status=status)
    assert cancel_task(task.pk, by=None) == FINISHED
    assert outputs.collect_outputs(task.pk) == 1
    task.refresh_from_db()
    assert task.status == Status.COMPLETED
    assert not task.cancel_requested  # the page shows no "cancel requested" beside it
    timeline = [e.message for e in TaskEvent.objects.filter(task=task).order_by("at", "pk")]
    assert timeline[-2:] == ["cancel requested by the system", "1 output stored"]
    assert not any("interrupt" in message for message in timeline)


def test_a_cancel_request_is_in_the_timeline_before_the_end_it_raced_with(sim_thread):
    _sim, server, first, _second = two_on_one_slow_server(sim_thread)
    transition(first.pk, Status.DISPATCHED, Status.RUNNING, message="execution_start")
    assert cancel_task(first.pk, by=None) == REQUESTED
    # execution_interrupted reaches the execution handler, which does this:
    transition(first.pk, Status.active(), Status.CANCELED, message="Interrupted on request")
    timeline = [e.message for e in TaskEvent.objects.filter(task=first).order_by("at", "pk")]
    assert timeline[-3:] == [
        "cancel requested by the system",
        f"interrupting on {server.name}",
        "Interrupted on request",
    ]
