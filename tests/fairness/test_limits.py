"""Per-team and per-user limits (issue 18 item 3): queued limits refuse submissions
with the numbers; running limits hold dispatch back, say why, and release."""

from __future__ import annotations

import pytest
from django.test import Client

from fairness.limits import QueueLimitReached
from fairness.models import TeamLimits, UserLimit
from tasks import dispatch
from tasks.models import Status, Task
from tasks.submission import submit_runs
from tasks.transitions import transition
from tests.api.callers import caller_for, error_of
from tests.factories import make_task, make_team, make_user, trivial_graph
from tests.simulator_thread import register
from workflows.templating import Run

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("own_dispatch_keys")]


def submit(team, user, count: int = 1):
    runs = [Run(trivial_graph(seed=i), {}) for i in range(count)]
    return submit_runs(team=team, submitter=user, runs=runs)


def test_a_submission_past_the_teams_queued_limit_is_refused_with_the_numbers():
    team = make_team()
    user = make_user(team=team)
    TeamLimits.objects.create(team=team, max_queued=3)
    submit(team, user, 2)
    with pytest.raises(QueueLimitReached) as refused:
        submit(team, user, 2)
    assert refused.value.as_json() == {"scope": "team", "limit": 3, "queued": 2, "submitting": 2}
    assert Task.objects.filter(team=team).count() == 2  # nothing of the refused one
    submit(team, user, 1)  # exactly up to the limit is allowed


def test_each_member_has_the_teams_default_queued_limit_unless_overridden():
    team = make_team()
    plain, trusted = make_user(team=team), make_user(team=team)
    TeamLimits.objects.create(team=team, user_max_queued=1)
    UserLimit.objects.create(team=team, user=trusted, max_queued=5)
    submit(team, plain)
    with pytest.raises(QueueLimitReached) as refused:
        submit(team, plain)
    assert refused.value.scope == "user"
    submit(team, trusted, 5)


def test_the_api_answers_a_submission_past_the_limit_with_a_429_envelope_and_the_numbers():
    team = make_team()
    user = make_user(team=team)
    TeamLimits.objects.create(team=team, max_queued=1)
    make_task(team, submitter=user)
    response = caller_for(user)("POST", "tasks", {"graph": trivial_graph()})
    assert response.status_code == 429
    error = error_of(response)
    assert error["type"] == "queue_limit"
    assert error["details"] == {"scope": "team", "limit": 1, "queued": 1, "submitting": 1}
    assert "at most 1 task waiting" in error["message"]


def test_a_team_at_its_running_limit_waits_says_why_and_goes_on_when_a_task_ends(sim_thread):
    register(sim_thread.start(1)[0], max_inflight=4)
    team, other = make_team("Limited"), make_team("Free")
    user = make_user(team=team)
    TeamLimits.objects.create(team=team, max_running=1)
    first, second = make_task(team, submitter=user), make_task(team, submitter=user)
    free = make_task(other)

    assert dispatch.dispatch_pending() == 2  # one of the limited team's, the other team's
    first.refresh_from_db()
    free.refresh_from_db()
    assert first.status == Status.DISPATCHED
    assert free.status == Status.DISPATCHED
    reason = "Limited has 1 of its 1 allowed tasks running (team limit)"
    assert dispatch.waiting_reason(Task.objects.get(pk=second.pk)) == reason
    # The API and the task page say it too.
    body = caller_for(user)("GET", f"tasks/{second.pk}").json()
    assert body["waiting_reason"] == reason
    client = Client()
    client.force_login(user)
    assert reason in client.get(f"/tasks/{second.pk}/").content.decode()
    # And its row in the task list, as rendered and as fetched again once live.
    assert f'<div class="muted small waiting-reason">{reason}</div>' in (
        client.get("/tasks/").content.decode()
    )
    assert reason in client.get(f"/tasks/rows/?task={second.pk}").content.decode()

    assert dispatch.dispatch_pending() == 0  # still at the limit
    assert transition(first.pk, Status.active(), Status.COMPLETED, message="done (test)")
    assert dispatch.dispatch_pending() == 1
    second.refresh_from_db()
    assert second.status == Status.DISPATCHED
    assert dispatch.waiting_reason(second) is None


def test_a_user_at_their_limit_does_not_keep_a_teammates_later_task_out_of_dispatch(sim_thread):
    register(sim_thread.start(1)[0], max_inflight=4)
    team = make_team()
    busy, other = make_user(team=team), make_user(team=team)
    TeamLimits.objects.create(team=team, user_max_running=1)
    # More than a pass reads as candidates, all ahead of the teammate's task.
    backlog = [make_task(team, submitter=busy) for _ in range(dispatch.CANDIDATES + 5)]
    later = make_task(team, submitter=other)

    assert dispatch.dispatch_pending() == 2
    later.refresh_from_db()
    assert later.status == Status.DISPATCHED
    running = Task.objects.filter(pk__in=[t.pk for t in backlog], status=Status.DISPATCHED)
    assert running.count() == 1
    waiting = Task.objects.get(pk=backlog[-1].pk)
    assert "1 of their 1 allowed tasks running (user limit)" in dispatch.waiting_reason(waiting)
