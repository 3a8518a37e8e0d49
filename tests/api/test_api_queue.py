"""/queue: its numbers, and pause/resume/clear of everyone's queue (staff) or one team's
(its admins), with the dashboard buttons' rules."""

from __future__ import annotations

import pytest

from tasks import queue
from tasks.models import Priority, QueuePause, Status, Task
from tests.api.callers import error_of
from tests.factories import make_task

pytestmark = pytest.mark.django_db

ACTIONS = ["pause", "resume", "clear"]


@pytest.fixture(autouse=True)
def no_dispatch_wake(monkeypatch):
    """Resuming wakes dispatch after commit; these tests only look at the queue."""
    monkeypatch.setattr(queue, "_wake", lambda: None)


def statuses(*tasks) -> list[str]:
    return [Task.objects.get(pk=task.pk).status for task in tasks]


# -- reading -------------------------------------------------------------------------------


def test_the_queue_shows_counts_by_status_and_waiting_by_priority(world):
    make_task(world.team, priority=Priority.HIGH)
    make_task(world.team, priority=Priority.HIGH)
    make_task(world.team, priority=Priority.LOW)
    make_task(world.team, status=Status.RUNNING)
    response = world.viewer("GET", "queue")
    assert response.status_code == 200
    body = response.json()
    assert body["paused"] is False
    assert body["paused_teams"] == []
    assert body["counts"] == {
        "pending": 3,
        "dispatched": 0,
        "running": 1,
        "completed": 0,
        "failed": 0,
        "canceled": 0,
    }
    assert body["by_priority"] == {"low": 1, "normal": 0, "high": 2, "urgent": 0}


def test_members_count_their_teams_tasks_and_staff_everyones(world):
    make_task(world.team)
    make_task(world.other_team)
    make_task(world.other_team)
    assert world.member("GET", "queue").json()["counts"]["pending"] == 1
    assert world.stranger("GET", "queue").json()["counts"]["pending"] == 2
    assert world.staff("GET", "queue").json()["counts"]["pending"] == 3


def test_reading_the_queue_needs_credentials(world):
    response = world.anonymous("GET", "queue")
    assert response.status_code == 401
    assert error_of(response)["type"] == "not_authenticated"


# -- everyone's queue: staff only ------------------------------------------------------------


@pytest.mark.parametrize("body", [None, {}, {"team": None}], ids=["no-body", "empty", "null"])
def test_staff_pause_and_resume_everyones_queue(world, body):
    paused = world.staff("POST", "queue/pause", body)
    assert paused.status_code == 200
    assert paused.json()["paused"] is True
    assert queue.is_paused(None)
    assert world.viewer("GET", "queue").json()["paused"] is True
    resumed = world.staff("POST", "queue/resume", body)
    assert resumed.status_code == 200
    assert resumed.json()["paused"] is False
    assert not QueuePause.objects.exists()


def test_pausing_twice_is_one_pause(world):
    world.staff("POST", "queue/pause")
    assert world.staff("POST", "queue/pause").status_code == 200
    assert QueuePause.objects.count() == 1


def test_resuming_a_running_queue_is_harmless(world):
    response = world.staff("POST", "queue/resume")
    assert response.status_code == 200
    assert response.json()["paused"] is False


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("role", ["admin", "member", "viewer", "stranger"])
def test_only_staff_control_everyones_queue(world, role, action):
    task = make_task(world.team)
    queue.pause(None)
    response = getattr(world, role)("POST", f"queue/{action}", {})
    assert response.status_code == 403
    assert error_of(response)["type"] == "permission_denied"
    assert queue.is_paused(None)
    assert statuses(task) == ["pending"]


def test_staff_clear_every_teams_pending_tasks(world):
    ours, theirs = make_task(world.team), make_task(world.other_team)
    running = make_task(world.team, status=Status.RUNNING)
    response = world.staff("POST", "queue/clear")
    assert response.status_code == 200
    body = response.json()
    assert body["canceled"] == 2
    assert body["counts"]["pending"] == 0
    assert body["counts"]["canceled"] == 2
    assert statuses(ours, theirs, running) == ["canceled", "canceled", "running"]


# -- one team's queue: its admins ------------------------------------------------------------


def test_a_team_admin_pauses_and_resumes_their_teams_queue(world):
    response = world.admin("POST", "queue/pause", {"team": world.team.pk})
    assert response.status_code == 200
    body = response.json()
    assert (body["paused"], body["paused_teams"]) == (False, [world.team.pk])
    assert queue.is_paused(world.team.pk)
    assert not queue.is_paused(world.other_team.pk)
    assert world.viewer("GET", "queue").json()["paused_teams"] == [world.team.pk]
    assert world.stranger("GET", "queue").json()["paused_teams"] == []
    response = world.admin("POST", "queue/resume", {"team": world.team.pk})
    assert response.json()["paused_teams"] == []
    assert not queue.is_paused(world.team.pk)


def test_a_team_admin_clears_only_their_teams_pending_tasks(world):
    ours = make_task(world.team)
    mine_running = make_task(world.team, status=Status.DISPATCHED)
    theirs = make_task(world.other_team)
    response = world.admin("POST", "queue/clear", {"team": world.team.pk})
    assert response.status_code == 200
    assert response.json()["canceled"] == 1
    assert statuses(ours, mine_running, theirs) == ["canceled", "dispatched", "pending"]
    event = Task.objects.get(pk=ours.pk).events.order_by("-pk").first()
    assert "queue cleared by ada" in event.message


def test_clearing_an_empty_queue_cancels_nothing(world):
    response = world.admin("POST", "queue/clear", {"team": world.team.pk})
    assert response.status_code == 200
    assert response.json()["canceled"] == 0


def test_staff_control_any_teams_queue(world):
    response = world.staff("POST", "queue/pause", {"team": world.other_team.pk})
    assert response.status_code == 200
    assert queue.is_paused(world.other_team.pk)
    assert not queue.is_paused(None)


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("role", ["member", "viewer"])
def test_members_and_viewers_cannot_control_their_teams_queue(world, role, action):
    task = make_task(world.team)
    queue.pause(world.team)
    response = getattr(world, role)("POST", f"queue/{action}", {"team": world.team.pk})
    assert response.status_code == 403
    assert "admins" in error_of(response)["message"]
    assert queue.is_paused(world.team.pk)
    assert statuses(task) == ["pending"]


@pytest.mark.parametrize("action", ACTIONS)
def test_another_teams_queue_is_a_404_like_a_missing_team(world, action):
    task = make_task(world.other_team)
    queue.pause(world.other_team)
    response = world.admin("POST", f"queue/{action}", {"team": world.other_team.pk})
    assert response.status_code == 404
    assert error_of(response)["type"] == "not_found"
    assert response.json() == world.admin("POST", f"queue/{action}", {"team": 999999}).json()
    assert queue.is_paused(world.other_team.pk)
    assert statuses(task) == ["pending"]


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("team", ["studio", [1], {"id": 1}])
def test_a_team_that_is_not_an_id_is_a_validation_error(world, action, team):
    response = world.admin("POST", f"queue/{action}", {"team": team})
    assert response.status_code == 400
    error = error_of(response)
    assert error["type"] == "validation_error"
    assert [p["field"] for p in error["details"]["fields"]] == ["team"]


@pytest.mark.parametrize("action", ACTIONS)
def test_controlling_the_queue_needs_credentials(world, action):
    task = make_task(world.team)
    response = world.anonymous("POST", f"queue/{action}", {"team": world.team.pk})
    assert response.status_code == 401
    assert not QueuePause.objects.exists()
    assert statuses(task) == ["pending"]
