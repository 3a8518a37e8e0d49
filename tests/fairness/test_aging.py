"""Priority aging (issue 18 item 3): the queue's order at explicit moments, and the
forecast replaying that same order."""

from __future__ import annotations

import copy
from datetime import timedelta

import pytest
from django.utils import timezone

from fairness import aging
from servers import speed
from servers.models import ServerSpeed
from tasks import eta, queue
from tasks.models import Priority
from tests.factories import make_server, make_task, make_team, shared_workflow

pytestmark = pytest.mark.django_db

RATE = 60  # seconds per level


@pytest.fixture(autouse=True)
def aging_on(settings):
    settings.COMFYWEB_AGING_SECONDS_PER_LEVEL = RATE


def order(now) -> list[int]:
    return [task.pk for task in queue.next_candidates(100, now=now)]


def test_a_low_task_rises_one_level_per_period_waited_and_stops_at_urgent():
    submitted = timezone.now()
    assert aging.effective_priority_of(Priority.LOW, submitted, submitted) == Priority.LOW
    at = [submitted + timedelta(seconds=s) for s in (59, 60, 125, 180, 3600)]
    levels = [aging.effective_priority_of(Priority.LOW, submitted, moment) for moment in at]
    assert levels == [0, 1, 2, 3, 3]


def test_the_queue_orders_by_the_aged_priority_at_the_moment_it_is_read():
    team = make_team()
    start = timezone.now()
    low = make_task(team, priority=Priority.LOW, created_at=start)
    normal = make_task(team, priority=Priority.NORMAL, created_at=start + timedelta(seconds=70))
    urgent = make_task(team, priority=Priority.URGENT, created_at=start + timedelta(seconds=150))

    # At 150 s: low has risen 2 levels (High), normal 1 (High), urgent none.
    assert order(start + timedelta(seconds=150)) == [urgent.pk, low.pk, normal.pk]
    # At 100 s low has risen one level (Normal) and is older than the normal task.
    assert order(start + timedelta(seconds=100))[:2] == [urgent.pk, low.pk]
    # At 180 s low is at the top level with the urgent task, and older: it goes first.
    assert order(start + timedelta(seconds=180)) == [low.pk, urgent.pk, normal.pk]


def test_with_aging_off_the_order_is_by_priority_alone(settings):
    settings.COMFYWEB_AGING_SECONDS_PER_LEVEL = 0
    team = make_team()
    start = timezone.now()
    low = make_task(team, priority=Priority.LOW, created_at=start - timedelta(days=1))
    urgent = make_task(team, priority=Priority.URGENT, created_at=start)
    assert order(start) == [urgent.pk, low.pk]


def test_teams_take_turns_among_tasks_of_one_aged_level():
    busy, quiet = make_team("Busy"), make_team("Quiet")
    start = timezone.now()
    # Busy's urgent stream, and Quiet's low task that has waited 3 levels' time.
    stream = [
        make_task(busy, priority=Priority.URGENT, created_at=start + timedelta(seconds=170 + i))
        for i in range(5)
    ]
    waited = make_task(quiet, priority=Priority.LOW, created_at=start)
    ranked = order(start + timedelta(seconds=180))
    assert ranked[:2] == [waited.pk, stream[0].pk]


def test_the_forecast_places_pending_tasks_in_the_aged_order():
    fast = make_server("fast")
    graph = copy.deepcopy(shared_workflow("slow_progress"))
    graph["2"]["inputs"] |= {"steps": 5}
    ServerSpeed.objects.create(
        server=fast,
        key=speed.speed_key_of(graph),
        seconds_per_unit=1.0,
        last_seconds_per_unit=1.0,
        samples=3,
    )
    team = make_team()
    now = timezone.now()
    old_low = make_task(
        team, graph=graph, priority=Priority.LOW, created_at=now - timedelta(seconds=3 * RATE)
    )
    fresh_high = make_task(team, graph=graph, priority=Priority.HIGH, created_at=now)
    young_low = make_task(team, graph=graph, priority=Priority.LOW, created_at=now)

    estimates = eta.forecast([old_low, fresh_high, young_low], now=now)

    dispatch_order = order(now)
    assert dispatch_order == [old_low.pk, fresh_high.pk, young_low.pk]
    assert [estimates[pk].queue_position for pk in dispatch_order] == [1, 2, 3]
    starts = [(estimates[pk].starts_at - now).total_seconds() for pk in dispatch_order]
    assert starts == pytest.approx([0, 5, 10])
