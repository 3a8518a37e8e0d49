"""The queue's order (priority, age, team turns), pause/resume/clear and statistics."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from tasks import queue
from tasks.models import Priority, QueuePause, Status, Task
from teams.models import Role
from tests.factories import aged, make_task, make_team, make_user

pytestmark = pytest.mark.django_db


def order(limit: int = 100) -> list[int]:
    return [task.pk for task in queue.next_candidates(limit)]


def test_higher_priority_goes_first_then_the_oldest():
    team = make_team()
    old_low = make_task(team, priority=Priority.LOW, created_at=aged(30))
    new_normal = make_task(team, priority=Priority.NORMAL, created_at=aged(1))
    old_normal = make_task(team, priority=Priority.NORMAL, created_at=aged(20))
    urgent = make_task(team, priority=Priority.URGENT, created_at=aged(0))
    assert order() == [urgent.pk, old_normal.pk, new_normal.pk, old_low.pk]


def test_a_teams_big_batch_does_not_starve_another_teams_single_task():
    busy, quiet = make_team("Busy"), make_team("Quiet")
    batch = [make_task(busy, created_at=aged(60 - i)) for i in range(50)]
    single = make_task(quiet, created_at=aged(0))
    ranked = order(limit=3)
    assert ranked == [batch[0].pk, single.pk, batch[1].pk]


def test_teams_take_turns_within_one_priority_only():
    a, b = make_team("A"), make_team("B")
    a_high = [make_task(a, priority=Priority.HIGH, created_at=aged(10 - i)) for i in range(3)]
    b_normal = make_task(b, priority=Priority.NORMAL, created_at=aged(50))
    assert order() == [*(t.pk for t in a_high), b_normal.pk]


def test_tasks_backing_off_and_tasks_not_pending_are_skipped():
    team = make_team()
    later = make_task(team, not_before=timezone.now() + timedelta(minutes=5))
    due = make_task(team, not_before=timezone.now() - timedelta(seconds=1))
    make_task(team, status=Status.DISPATCHED)
    make_task(team, status=Status.CANCELED)
    assert order() == [due.pk]
    assert later.pk not in order()


def test_a_paused_team_is_skipped_and_resumes_where_it_was():
    paused, other = make_team("Paused"), make_team("Other")
    held = make_task(paused, created_at=aged(10))
    free = make_task(other, created_at=aged(1))
    queue.pause(paused)
    assert queue.is_paused(paused.pk)
    assert not queue.is_paused(other.pk)
    assert order() == [free.pk]
    assert queue.resume(paused)
    assert order() == [held.pk, free.pk]


def test_a_global_pause_stops_everything_and_pausing_twice_is_one_pause():
    task = make_task()
    queue.pause(None)
    queue.pause(None)
    assert QueuePause.objects.count() == 1
    assert queue.is_paused(task.team_id)
    assert order() == []
    queue.resume(None)
    assert order() == [task.pk]


def test_only_staff_pause_everyone_and_only_team_admins_pause_a_team():
    team = make_team()
    with pytest.raises(PermissionDenied):
        queue.pause(None, by=make_user(team=team, role=Role.ADMIN))
    with pytest.raises(PermissionDenied):
        queue.pause(team, by=make_user(team=team, role=Role.MEMBER))
    queue.pause(team, by=make_user(team=team, role=Role.ADMIN))
    queue.pause(None, by=make_user(staff=True))
    assert QueuePause.objects.count() == 2


def test_clear_cancels_pending_tasks_of_that_team_only_and_leaves_running_ones():
    ours, theirs = make_team("Ours"), make_team("Theirs")
    pending = [make_task(ours) for _ in range(3)]
    running = make_task(ours, status=Status.RUNNING)
    other = make_task(theirs)
    assert queue.clear(ours, by=make_user(team=ours, role=Role.ADMIN)) == 3
    statuses = dict(Task.objects.values_list("pk", "status"))
    assert {statuses[t.pk] for t in pending} == {Status.CANCELED}
    assert statuses[running.pk] == Status.RUNNING
    assert statuses[other.pk] == Status.PENDING


def test_stats_count_by_state_and_priority_for_the_given_teams():
    ours, theirs = make_team("Ours"), make_team("Theirs")
    make_task(ours, priority=Priority.HIGH)
    make_task(ours, priority=Priority.LOW)
    make_task(ours, status=Status.RUNNING)
    make_task(theirs)
    numbers = queue.stats([ours.pk])
    assert numbers["counts"]["pending"] == 2
    assert numbers["counts"]["running"] == 1
    assert numbers["by_priority"] == {"low": 1, "normal": 0, "high": 1, "urgent": 0}
    assert queue.stats()["counts"]["pending"] == 3


def test_stats_give_wait_percentiles_of_the_last_hour_and_throughput():
    team = make_team()
    now = timezone.now()
    for wait in range(1, 101):  # waits of 1..100 s, dispatched within the hour
        make_task(
            team,
            status=Status.RUNNING,
            created_at=now - timedelta(minutes=30, seconds=wait),
            dispatched_at=now - timedelta(minutes=30),
        )
    make_task(  # dispatched two hours ago: outside the window
        team,
        status=Status.RUNNING,
        created_at=now - timedelta(hours=3),
        dispatched_at=now - timedelta(hours=2),
    )
    for minutes in (1, 2, 3, 4, 20):
        make_task(team, status=Status.COMPLETED, finished_at=now - timedelta(minutes=minutes))
    numbers = queue.stats(now=now)
    assert numbers["wait_seconds"] == {"p50": 50.0, "p90": 90.0, "p99": 99.0}
    assert numbers["throughput_per_minute"] == pytest.approx(0.4)


def test_stats_without_dispatches_have_no_wait_percentiles():
    assert queue.stats()["wait_seconds"] == {"p50": None, "p90": None, "p99": None}
