"""The team's limits page: admins set the team's and a member's limits, members read
them beside what runs and waits."""

from __future__ import annotations

import pytest
from django.test import Client

from fairness.models import TeamLimits, UserLimit
from teams.models import Role
from tests.factories import make_task, make_team, make_user

pytestmark = pytest.mark.django_db


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_team_admin_sets_the_teams_limits_and_a_members_own_on_the_page():
    team = make_team()
    admin = make_user(team=team, role=Role.ADMIN)
    member = make_user("mo", team=team)
    page = signed_in(admin)

    response = page.post(
        "/limits/",
        {"team": team.pk, "action": "team", "max_running": "4", "user_max_queued": "10"},
    )
    assert response.status_code == 302
    limits = TeamLimits.objects.get(team=team)
    assert (limits.max_running, limits.max_queued, limits.user_max_queued) == (4, None, 10)

    response = page.post(
        "/limits/", {"team": team.pk, "action": "user", "user": member.pk, "max_queued": "25"}
    )
    assert response.status_code == 302
    assert UserLimit.objects.get(team=team, user=member).max_queued == 25

    # Both blank: the member is back on the team's default.
    page.post("/limits/", {"team": team.pk, "action": "user", "user": member.pk})
    assert not UserLimit.objects.filter(team=team, user=member).exists()


def test_members_read_the_limits_and_what_runs_and_waits_against_them_but_cannot_change_them():
    team = make_team()
    member = make_user("mo", team=team)
    TeamLimits.objects.create(team=team, max_running=2, user_max_queued=5)
    make_task(team, submitter=member)
    make_task(team, submitter=member)

    html = signed_in(member).get("/limits/").content.decode()
    assert "0 running, 2 waiting now" in html
    assert "2 / 5" in html  # mo's waiting tasks against the member default
    assert "Save team limits" not in html
    refused = signed_in(member).post("/limits/", {"team": team.pk, "max_running": "99"})
    assert refused.status_code == 403
    assert TeamLimits.objects.get(team=team).max_running == 2


def test_a_bad_value_is_a_400_with_the_form_and_nothing_saved():
    team = make_team()
    admin = make_user(team=team, role=Role.ADMIN)
    response = signed_in(admin).post(
        "/limits/", {"team": team.pk, "action": "team", "max_running": "-1"}
    )
    assert response.status_code == 400
    assert not TeamLimits.objects.filter(team=team).exists()
