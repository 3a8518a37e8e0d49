"""Retry and Run again (tasks/rerun.py): the one service behind the task page, the
batch page and the API."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from servers.models import ServerState
from tasks import rerun
from tasks.models import Batch, Priority, Status, Task
from tasks.submission import submit_runs
from teams.models import Role
from tests.factories import (
    add_version,
    capable_state,
    make_server,
    make_task,
    make_team,
    make_template,
    make_user,
    make_workflow,
    trivial_graph,
)
from workflows.models import ParameterType
from workflows.runnable import Unrunnable
from workflows.templating import Run, expand_runs

pytestmark = pytest.mark.django_db


def failed_task(team, **fields) -> Task:
    server = make_server()
    return make_task(
        team,
        dispatched_to=server,
        status=Status.FAILED,
        error_type="RuntimeError",
        error_message="boom",
        error_node="3",
        progress_node="3",
        progress_value=4,
        progress_max=10,
        progress_fraction=0.5,
        **fields,
    )


def test_retry_puts_a_failed_task_back_in_the_queue_in_place_with_its_graph():
    team = make_team()
    batch = Batch.objects.create(team=team)
    task = failed_task(team, batch=batch, graph=trivial_graph(seed=42), params={"3.seed": 42})
    graph = task.graph

    assert rerun.retry([task.pk], by=make_user(team=team)) == [task.pk]

    task.refresh_from_db()
    assert task.status == Status.PENDING
    assert (task.graph, task.params, task.batch_id) == (graph, {"3.seed": 42}, batch.pk)
    assert task.attempts == 0
    assert (task.server, task.prompt_id, task.error_message, task.error_node) == (None, "", "", "")
    assert (task.progress_fraction, task.progress_value, task.finished_at) == (0.0, 0, None)
    # The timeline keeps the run that failed, then says who retried it.
    last = task.events.order_by("at", "pk").last()
    assert (last.from_status, last.to_status) == (Status.FAILED, Status.PENDING)
    assert "retried by" in last.message


def test_retry_takes_canceled_tasks_too_and_leaves_other_states_alone():
    team = make_team()
    canceled = make_task(team, status=Status.CANCELED, cancel_requested=True)
    completed = make_task(team, status=Status.COMPLETED)
    pending = make_task(team)

    retried = rerun.retry([canceled.pk, completed.pk, pending.pk], by=make_user(team=team))

    assert retried == [canceled.pk]
    canceled.refresh_from_db()
    assert (canceled.status, canceled.cancel_requested) == (Status.PENDING, False)
    assert Task.objects.get(pk=completed.pk).status == Status.COMPLETED


def test_retry_wakes_dispatch_after_the_commit(django_capture_on_commit_callbacks, monkeypatch):
    woken = []
    monkeypatch.setattr("tasks.enqueue.wake_dispatch", lambda: woken.append(1))
    team = make_team()
    task = failed_task(team)
    with django_capture_on_commit_callbacks(execute=True):
        rerun.retry([task.pk], by=make_user(team=team))
    assert woken == [1]


def test_viewers_and_outsiders_cannot_retry_or_run_again():
    team = make_team()
    task = failed_task(team)
    for user in (make_user(team=team, role=Role.VIEWER), make_user(team=make_team())):
        with pytest.raises(PermissionDenied):
            rerun.retry([task.pk], by=user)
        with pytest.raises(PermissionDenied):
            rerun.run_again([task.pk], by=user)
    assert Task.objects.get(pk=task.pk).status == Status.FAILED
    assert Task.objects.count() == 1


def test_run_again_makes_a_new_task_with_the_exact_stored_graph_and_seeds():
    team = make_team()
    version = make_workflow(team, graph=trivial_graph(seed=5)).current_version
    template = make_template(version)
    original = make_task(
        team,
        status=Status.COMPLETED,
        graph=trivial_graph(seed=99),  # what it ran, whatever the template renders today
        params={"3.seed": 99},
        workflow_version=version,
        template=template,
        priority=Priority.HIGH,
    )
    add_version(version.workflow, trivial_graph(seed=1))  # the workflow moved on since

    result = rerun.run_again([original.pk], by=make_user(team=team))

    (again,) = result.tasks
    assert result.batch is None
    assert again.pk != original.pk
    assert again.status == Status.PENDING
    assert again.graph == original.graph
    assert again.params == {"3.seed": 99}
    assert (again.workflow_version, again.template) == (version, template)
    assert again.priority == Priority.HIGH


def test_run_again_with_new_seeds_draws_the_seeds_no_parameter_binds():
    team = make_team()
    original = make_task(team, graph=trivial_graph(seed=7), params={"3.seed": 7, "x": 1})

    (again,) = rerun.run_again([original.pk], by=make_user(team=team), new_seeds=True).tasks

    seed = again.graph["3"]["inputs"]["seed"]
    assert again.params == {"3.seed": seed, "x": 1}
    assert seed != 7 or again.graph != original.graph  # 1 in 2**32 that it draws 7 again
    untouched = {k: v for k, v in again.graph.items() if k != "3"}
    assert untouched == {k: v for k, v in original.graph.items() if k != "3"}


def test_new_seeds_go_to_a_seed_parameter_and_never_to_an_int_the_user_chose():
    team = make_team()
    user = make_user(team=team)
    version = make_workflow(team, graph=trivial_graph(seed=3)).current_version
    on_seed = {"name": "s", "node_id": "3", "input_name": "seed", "default": 3}
    chosen = make_template(version, parameters=[{**on_seed, "type": ParameterType.INT}])
    drawn = make_template(version, parameters=[{**on_seed, "type": ParameterType.SEED}])
    for template, redrawn in ((chosen, {}), (drawn, {("3", "seed"): "s"})):
        runs = expand_runs(template=template, values={"s": 3})
        (task,) = submit_runs(
            team=team, submitter=user, runs=runs, workflow_version=version, template=template
        ).tasks
        assert rerun.fresh_seed_keys(task) == redrawn
        (again,) = rerun.run_again([task.pk], by=user, new_seeds=True).tasks
        assert set(again.params) == {"s"}
        assert again.graph["3"]["inputs"]["seed"] == again.params["s"]
        if not redrawn:
            assert again.graph == task.graph


def test_running_a_batch_again_makes_a_new_batch_of_the_same_graphs():
    team = make_team()
    user = make_user(team=team)
    runs = [Run(trivial_graph(seed=s), {"3.seed": s}) for s in range(3)]
    first = submit_runs(team=team, submitter=user, runs=runs, description="three cats")

    again = rerun.run_again([t.pk for t in first.tasks], by=user)

    assert again.batch is not None
    assert again.batch.pk != first.batch.pk
    assert again.batch.description == "three cats (run again)"
    assert [t.graph for t in again.tasks] == [t.graph for t in first.tasks]


def test_run_again_refuses_tasks_of_different_submissions_and_nothing():
    team = make_team()
    user = make_user(team=team)
    one, other = make_task(team), make_task(make_team())
    with pytest.raises(ValidationError):
        rerun.run_again([], by=user)
    with pytest.raises(ValidationError):
        rerun.run_again([one.pk, other.pk], by=user)


def test_retry_is_refused_when_no_server_can_run_the_graph_any_more():
    team = make_team()
    task = failed_task(team)
    # Its server, read by the monitor since, has none of the graph's models.
    ServerState.objects.update(**capable_state(model_files={"checkpoints": []}))
    with pytest.raises(Unrunnable):
        rerun.retry([task.pk], by=make_user(team=team))
    assert Task.objects.get(pk=task.pk).status == Status.FAILED


def test_a_task_run_from_a_workflow_runs_again_on_the_same_version():
    team = make_team()
    version = make_workflow(team, graph=trivial_graph(seed=11)).current_version
    original = make_task(team, graph=version.graph, workflow_version=version)
    add_version(version.workflow, trivial_graph(seed=12))

    (again,) = rerun.run_again([original.pk], by=make_user(team=team)).tasks

    assert (again.workflow_version, again.template) == (version, None)
    assert again.graph["3"]["inputs"]["seed"] == 11
