from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from servers.requirements import workflow_key_of
from tasks.models import Priority, Status, TaskEvent
from tasks.submission import submit_runs
from teams.models import Role
from tests.factories import make_team, make_user, trivial_graph
from workflows.templating import Run

pytestmark = pytest.mark.django_db


def test_one_run_makes_one_pending_task_with_its_workflow_key_and_no_batch():
    team = make_team()
    graph = trivial_graph(seed=7)
    result = submit_runs(
        team=team,
        submitter=make_user(team=team),
        runs=[Run(graph, {"seed": 7})],
        priority=Priority.HIGH,
    )
    (task,) = result.tasks
    assert result.batch is None
    task.refresh_from_db()
    assert task.status == Status.PENDING
    assert task.priority == Priority.HIGH
    assert task.params == {"seed": 7}
    assert task.workflow_key == workflow_key_of(graph)
    assert TaskEvent.objects.get(task=task).message == "submitted"


def test_several_runs_share_a_batch_and_a_seed_sweep_shares_a_workflow_key():
    team = make_team()
    runs = [Run(trivial_graph(seed=s), {"seed": s}) for s in range(5)]
    result = submit_runs(team=team, submitter=make_user(team=team), runs=runs, description="sweep")
    assert result.batch is not None
    assert result.batch.description == "sweep"
    assert {t.batch_id for t in result.tasks} == {result.batch.pk}
    assert len({t.workflow_key for t in result.tasks}) == 1


def test_viewers_and_outsiders_cannot_submit():
    team = make_team()
    for user in (make_user(team=team, role=Role.VIEWER), make_user(team=make_team())):
        with pytest.raises(PermissionDenied):
            submit_runs(team=team, submitter=user, runs=[Run(trivial_graph(), {})])


def test_an_empty_run_list_is_refused():
    team = make_team()
    with pytest.raises(ValidationError):
        submit_runs(team=team, submitter=make_user(team=team), runs=[])


def test_dispatch_is_enqueued_only_after_commit(django_capture_on_commit_callbacks, monkeypatch):
    woken = []
    monkeypatch.setattr("tasks.enqueue.wake_dispatch", lambda: woken.append(1))
    team = make_team()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        submit_runs(team=team, submitter=make_user(team=team), runs=[Run(trivial_graph(), {})])
    assert woken == []
    for callback in callbacks:
        callback()
    assert woken == [1]


def test_another_teams_workflow_or_template_is_refused():
    from tests.factories import make_template, make_workflow

    ours, theirs = make_team("Ours"), make_team("Theirs")
    user = make_user(team=ours)
    version = make_workflow(theirs).current_version
    run = [Run(trivial_graph(), {})]
    with pytest.raises(PermissionDenied):
        submit_runs(team=ours, submitter=user, runs=run, workflow_version=version)
    with pytest.raises(PermissionDenied):
        submit_runs(team=ours, submitter=user, runs=run, template=make_template(version))
    own = make_workflow(ours).current_version
    result = submit_runs(team=ours, submitter=user, runs=run, workflow_version=own)
    assert result.tasks[0].workflow_version == own
