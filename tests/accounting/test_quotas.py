"""Monthly GPU quotas at submission: soft lowers the priority, hard refuses, 80 % warns."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client

from accounting.quotas import QuotaExceeded
from accounting.reports import month_of, today_utc
from tasks.models import Priority, TaskEvent
from tasks.submission import submit_runs
from teams.models import Role
from tests.accounting.usage_world import bill, quota
from tests.api.callers import caller_for, error_of
from tests.factories import (
    empty_save_template,
    make_team,
    make_user,
    shared_workflow,
    trivial_graph,
)
from workflows.templating import Run

pytestmark = [pytest.mark.django_db]


@pytest.fixture(autouse=True)
def no_dispatch(monkeypatch) -> None:
    monkeypatch.setattr("tasks.enqueue.wake_dispatch", lambda: None)


@pytest.fixture
def team():
    return make_team("Studio")


@pytest.fixture
def member(team):
    return make_user("max", team=team, role=Role.MEMBER)


def submit(team, user, priority=Priority.HIGH):
    return submit_runs(
        team=team, submitter=user, runs=[Run(trivial_graph(), {})], priority=priority
    )


def api_submit(user, team):
    return caller_for(user)(
        "POST", "tasks", {"graph": shared_workflow("empty_save"), "team": team.pk}
    )


def test_past_the_soft_quota_new_work_goes_in_at_low_priority_and_says_why(team, member):
    quota(team, soft=100, hard=1000)
    bill(team, 120)
    result = submit(team, member)
    task = result.tasks[0]
    assert task.priority == Priority.LOW
    submitted = TaskEvent.objects.get(task=task, to_status="pending")
    assert "low priority" in submitted.message
    assert "soft GPU quota" in submitted.message
    assert result.admission.lowered


def test_under_the_soft_quota_the_priority_asked_for_is_kept(team, member):
    quota(team, soft=100)
    bill(team, 50)
    assert submit(team, member).tasks[0].priority == Priority.HIGH


def test_usage_of_last_month_does_not_count_against_this_month(team, member):
    quota(team, soft=100, hard=100)
    first, _ = month_of(today_utc())
    bill(team, 5000, day=first - timedelta(days=1))
    assert submit(team, member).tasks[0].priority == Priority.HIGH


def test_past_the_hard_quota_submission_is_refused_with_the_numbers(team, member):
    quota(team, soft=100, hard=200)
    bill(team, 150)
    bill(team, 60)
    with pytest.raises(QuotaExceeded) as refused:
        submit(team, member)
    assert refused.value.state.used == 210
    assert refused.value.state.hard == 200
    assert "210 of 200 GPU-seconds" in refused.value.message_text


def test_the_api_refuses_past_the_hard_quota_with_used_and_limit_in_the_envelope(team, member):
    quota(team, hard=200)
    bill(team, 250)
    response = api_submit(member, team)
    assert response.status_code == 429
    error = error_of(response)
    assert error["type"] == "quota_exceeded"
    assert error["details"]["used_gpu_seconds"] == 250
    assert error["details"]["hard_gpu_seconds"] == 200
    assert error["details"]["month"] == today_utc().strftime("%Y-%m")


def test_the_submit_response_warns_from_80_percent_and_says_when_priority_was_lowered(team, member):
    quota(team, soft=100, hard=1000)
    bill(team, 85)
    warned = api_submit(member, team).json()["quota"]
    assert warned["lowered"] is False
    assert any("85 % of the soft GPU quota" in w for w in warned["warnings"])
    bill(team, 20)
    lowered = api_submit(member, team).json()
    assert lowered["quota"]["lowered"] is True
    assert lowered["tasks"][0]["priority"] == "low"


def test_a_team_without_a_quota_gets_no_quota_notice(team, member):
    bill(team, 10_000)
    assert api_submit(member, team).json()["quota"] is None


def test_the_submit_page_shows_the_refusal(team, member):
    template = empty_save_template(team)
    quota(team, hard=10)
    bill(team, 11)
    client = Client()
    client.force_login(member)
    response = client.post(
        f"/templates/{template.pk}/submit/",
        {"action": "submit", "priority": "1", "mode": "count", "count": "1", "p_width": "64"},
        follow=True,
    )
    assert "hard GPU quota" in response.content.decode()


def test_the_submit_page_says_the_work_went_in_at_low_priority_past_the_soft_quota(team, member):
    template = empty_save_template(team)
    quota(team, soft=100, hard=1000)
    bill(team, 120)
    client = Client()
    client.force_login(member)
    response = client.post(
        f"/templates/{template.pk}/submit/",
        {"action": "submit", "priority": "2", "mode": "count", "count": "1", "p_width": "64"},
        follow=True,
    )
    html = response.content.decode()
    assert "Queued 1 task at low priority." in html
    assert "Queued at low priority: the team is past its soft GPU quota" in html


def test_members_are_warned_on_the_dashboard_and_the_usage_page_from_80_percent(team, member):
    outsider = make_user("sam", team=make_team("Elsewhere"))
    quota(team, hard=100)
    bill(team, 80)
    client = Client()
    client.force_login(member)
    assert "80 % of the hard GPU quota" in client.get("/").content.decode()
    assert "80 % of the hard GPU quota" in client.get("/usage/").content.decode()
    client.force_login(outsider)
    assert "GPU quota" not in client.get("/").content.decode()


def test_no_warning_below_80_percent(team, member):
    quota(team, hard=100)
    bill(team, 79)
    client = Client()
    client.force_login(member)
    assert "GPU quota used" not in client.get("/").content.decode()
