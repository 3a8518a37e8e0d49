"""ETA and queue position (issue 16): the forecast replays the fleet with measured speeds.

The fleet here is built, not run: two servers whose speeds for the test's graph
were measured (1 s and 3.5 s per step), so every expected time is arithmetic.
"""

from __future__ import annotations

import copy
import html
import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from api.tokens import issue_token
from servers import speed
from servers.models import Server, ServerSpeed
from tasks import eta, queue
from tasks.models import Priority, Status
from tests.factories import make_server, make_task, make_team, make_user, shared_workflow

pytestmark = pytest.mark.django_db


def stepping(steps: int) -> dict:
    graph = copy.deepcopy(shared_workflow("slow_progress"))
    graph["2"]["inputs"] |= {"steps": steps}
    return graph


@pytest.fixture
def fleet():
    """A fast and a slow server, their speeds for `stepping` graphs measured."""
    fast, slow = make_server("fast"), make_server("slow")
    key = speed.speed_key_of(stepping(1))
    for server, rate in ((fast, 1.0), (slow, 3.5)):
        ServerSpeed.objects.create(
            server=server, key=key, seconds_per_unit=rate, last_seconds_per_unit=rate, samples=3
        )
    return fast, slow


def seconds_after(now, moment) -> float:
    return (moment - now).total_seconds()


def test_pending_tasks_are_placed_in_dispatch_order_where_they_would_finish_first(fleet):
    now = timezone.now()
    team = make_team()
    tasks = [
        make_task(team, graph=stepping(5), created_at=now + timedelta(seconds=i)) for i in range(4)
    ]
    urgent = make_task(
        team, graph=stepping(5), priority=Priority.HIGH, created_at=now + timedelta(seconds=9)
    )

    estimates = eta.forecast([*tasks, urgent], now=now)

    # The high-priority task is dispatched first, whatever its age.
    assert [estimates[t.pk].queue_position for t in (urgent, *tasks)] == [1, 2, 3, 4, 5]
    # 5 steps: 5 s on the fast server, 17.5 s on the slow one. The fast one takes
    # the first three (done at 5, 10, 15 s); the fourth would end there at 20 s,
    # on the slow one at 17.5 s; the fifth at 20 s on the fast one.
    starts = [seconds_after(now, estimates[t.pk].starts_at) for t in (urgent, *tasks)]
    ends = [estimates[t.pk].eta_seconds(now) for t in (urgent, *tasks)]
    assert starts == pytest.approx([0, 5, 10, 0, 15])
    assert ends == pytest.approx([5, 10, 15, 17.5, 20])


def test_a_running_task_counts_its_own_pace_and_delays_what_waits_for_its_server(fleet):
    fast, _slow = fleet
    now = timezone.now()
    # 20 steps: predicted 20 s on the fast server; 10 s in, only a quarter done.
    running = make_task(
        graph=stepping(20),
        dispatched_to=fast,
        status=Status.RUNNING,
        started_at=now - timedelta(seconds=10),
        progress_fraction=0.25,
    )
    waiting = make_task(graph=stepping(5), dispatched_to=fast, dispatched_at=now)
    pending = make_task(graph=stepping(5))

    estimates = eta.forecast([running, waiting, pending], now=now)

    # The prediction says 10 s left, its pace so far 30 s; a quarter done, the
    # prediction weighs three quarters: 15 s.
    assert estimates[running.pk].eta_seconds(now) == pytest.approx(15)
    # Queued on the same server (ComfyUI runs one prompt at a time): after it.
    assert seconds_after(now, estimates[waiting.pk].starts_at) == pytest.approx(15)
    assert estimates[waiting.pk].eta_seconds(now) == pytest.approx(20)
    # The fast server is busy for 20 s: 25 s there, 17.5 s on the slow one.
    assert estimates[pending.pk].eta_seconds(now) == pytest.approx(17.5)
    assert estimates[pending.pk].queue_position == 1


def test_a_task_whose_prompt_ended_is_due_now_and_frees_its_server(fleet):
    fast, _slow = fleet
    now = timezone.now()
    collecting = make_task(
        graph=stepping(20), dispatched_to=fast, status=Status.RUNNING, slot_held=False
    )
    pending = make_task(graph=stepping(5))
    estimates = eta.forecast([collecting, pending], now=now)
    assert estimates[collecting.pk].eta_seconds(now) == 0
    assert estimates[pending.pk].eta_seconds(now) == pytest.approx(5)


def test_without_a_server_that_takes_work_a_task_keeps_its_place_but_has_no_time(fleet):
    Server.objects.update(enabled=False)
    task = make_task(graph=stepping(5))
    estimate = eta.forecast([task])[task.pk]
    assert estimate.queue_position == 1
    assert estimate.finishes_at is None
    assert estimate.eta_seconds(timezone.now()) is None


def test_a_paused_queue_gives_its_tasks_no_place_and_ended_tasks_cost_no_query(
    fleet, django_assert_num_queries
):
    task = make_task(graph=stepping(5))
    queue.pause()
    assert eta.forecast([task]) == {}
    done = make_task(status=Status.COMPLETED)
    with django_assert_num_queries(0):
        assert eta.forecast([done]) == {}


def test_a_batch_is_expected_to_end_with_its_last_task(fleet):
    now = timezone.now()
    team = make_team()
    batch = team.batches.create(description="three")
    for i in range(3):
        make_task(team, graph=stepping(5), batch=batch, created_at=now + timedelta(seconds=i))
    # 5, 10 and 15 s on the fast server (the slow one would take 17.5 s).
    assert eta.batch_estimate(batch.pk, now=now).eta_seconds(now) == pytest.approx(15)


def test_the_remaining_time_trusts_the_prompts_own_pace_as_it_progresses():
    # Nothing done yet: the prediction less the time run (a little if overrun).
    assert speed.remaining_seconds(20, 5) == 15
    assert speed.remaining_seconds(20, 30) == pytest.approx(2)
    # Half done in 5 s of a predicted 20: prediction 15 s, own pace 5 s, halfway.
    assert speed.remaining_seconds(20, 5, 0.5) == pytest.approx(10)
    assert speed.remaining_seconds(20, 5, 1.0) == 0


def test_the_api_gives_each_task_its_place_and_eta_and_nothing_once_ended(fleet):
    team = make_team()
    user = make_user(team=team)
    token = issue_token(user, "tests")[1]
    now = timezone.now()
    first = make_task(team, graph=stepping(5), created_at=now)
    second = make_task(team, graph=stepping(5), created_at=now + timedelta(seconds=1))
    done = make_task(team, status=Status.COMPLETED)

    def get(path: str) -> dict:
        response = Client().get(f"/api/v1/{path}", HTTP_AUTHORIZATION=f"Bearer {token}")
        assert response.status_code == 200, response.content
        return response.json()

    one = get(f"tasks/{second.pk}")
    assert one["queue_position"] == 2
    assert one["eta_seconds"] == pytest.approx(10, abs=1)  # after the first, on the fast one
    listed = {item["id"]: item for item in get("tasks")["items"]}
    assert listed[first.pk]["queue_position"] == 1
    assert listed[first.pk]["eta_seconds"] == pytest.approx(5, abs=1)
    assert listed[done.pk]["queue_position"] is None
    assert listed[done.pk]["eta_seconds"] is None


def test_a_page_fetches_the_estimates_of_its_own_teams_tasks_and_batch_only(fleet):
    team = make_team()
    member = make_user(team=team)
    batch = team.batches.create(description="two")
    ours = [make_task(team, graph=stepping(5), batch=batch) for _ in range(2)]
    theirs = make_task(graph=stepping(5))
    client = Client()
    client.force_login(member)

    ids = [ours[0].pk, ours[1].pk, theirs.pk]
    html = client.get("/tasks/eta/", {"task": ids, "batch": batch.pk}).content.decode()

    assert f'id="task-{ours[1].pk}-eta"' in html
    assert "#3 in queue" in html  # teams take turns: the other team's first goes second
    assert f'id="batch-{batch.pk}-eta"' in html
    assert f"task-{theirs.pk}-eta" not in html  # another team's: as if it did not exist
    for bad in ({"task": "x"}, {"task": list(range(1, 202))}, {"batch": [1, 2]}):
        assert client.get("/tasks/eta/", bad).status_code == 400


def test_the_task_page_shows_a_pending_tasks_place_and_the_list_fetches_it_once_shown(fleet):
    team = make_team()
    member = make_user(team=team)
    task = make_task(team, graph=stepping(5))
    done = make_task(team, status=Status.COMPLETED)
    client = Client()
    client.force_login(member)

    page = client.get(f"/tasks/{task.pk}/").content.decode()
    assert f'id="task-{task.pk}-eta"' in page
    assert "#1 in queue" in page
    assert 'data-live-topic="eta"' in page  # fetched again when the queue moves

    # The list answers without a forecast: its unfinished rows wait for the fetch.
    listing = client.get("/tasks/").content.decode()
    assert f'<span id="task-{task.pk}-eta" class="eta">…</span>' in listing
    assert f'<span id="task-{done.pk}-eta" class="eta">—</span>' in listing
    refresh = re.search(r'<span id="eta-refresh"[^>]*data-refresh-url="([^"]+)"[^>]*>', listing)
    assert refresh is not None
    assert "data-refresh-on-subscribe" in refresh.group(0)
    fetched = client.get(html.unescape(refresh.group(1))).content.decode()
    assert "#1 in queue" in fetched


def test_a_batch_shows_when_it_should_be_done_on_its_page_and_in_the_api(fleet):
    team = make_team()
    member = make_user(team=team)
    batch = team.batches.create(description="three")
    for _ in range(3):
        make_task(team, graph=stepping(5), batch=batch)
    client = Client()
    client.force_login(member)

    html = client.get(f"/tasks/batches/{batch.pk}/").content.decode()
    assert f'id="batch-{batch.pk}-eta"' in html
    assert f"batch={batch.pk}" in html  # its refresh asks for the batch's estimate too
    token = issue_token(member, "tests")[1]
    answer = Client().get(f"/api/v1/batches/{batch.pk}", HTTP_AUTHORIZATION=f"Bearer {token}")
    # 5, 10 and 15 s on the fast server, the slow one taking 17.5 s each.
    assert answer.json()["eta_seconds"] == pytest.approx(15, abs=1)


def test_the_fleet_is_through_its_work_when_its_last_server_is(fleet):
    fast, _slow = fleet
    now = timezone.now()
    make_task(graph=stepping(20), dispatched_to=fast, dispatched_at=now)  # 20 s on the fast
    for i in range(2):
        make_task(graph=stepping(5), created_at=now + timedelta(seconds=i))
    # The fast server: 20 s, then 25 s; the slow one would take 17.5 s: the first
    # pending goes there (done at 17.5 s), the second to the fast one (25 s).
    assert seconds_after(now, eta.all_done(now=now)) == pytest.approx(25)
    Server.objects.update(enabled=False)
    assert eta.all_done(now=now) is None  # nobody to do it
