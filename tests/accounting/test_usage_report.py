"""The usage page, its CSV export and GET /api/v1/usage: totals per group, only your teams."""

from __future__ import annotations

import csv
import io
from datetime import date

import pytest
from django.test import Client

from teams.models import Role
from tests.accounting.usage_world import bill
from tests.api.callers import caller_for, error_of
from tests.factories import make_server, make_team, make_user

pytestmark = [pytest.mark.django_db]

DAY_1, DAY_2, LATER = date(2026, 11, 3), date(2026, 11, 4), date(2026, 12, 1)


@pytest.fixture
def world():
    studio, elsewhere = make_team("Studio"), make_team("Elsewhere")
    ada = make_user("ada", team=studio, role=Role.MEMBER)
    bob = make_user("bob", team=studio, role=Role.VIEWER)
    sam = make_user("sam", team=elsewhere, role=Role.ADMIN)
    h100, t4 = make_server("h100"), make_server("t4")
    bill(studio, 30, day=DAY_1, user=ada, server=h100, workflow="Portraits", weight=3.0)
    bill(studio, 10, day=DAY_1, user=bob, server=t4, workflow="Portraits", attempt=1, task_ref=7)
    bill(studio, 5, day=DAY_2, user=bob, server=t4, workflow="Upscale", attempt=2, task_ref=7)
    bill(studio, 1000, day=LATER, user=ada, server=t4, workflow="Portraits")
    bill(elsewhere, 500, day=DAY_1, user=sam, server=t4, workflow="Secret")
    return {"studio": studio, "elsewhere": elsewhere, "ada": ada, "bob": bob, "sam": sam}


def usage(user, **query):
    return caller_for(user)("GET", "usage", **{"from": "2026-11-01", "to": "2026-11-30"} | query)


def rows_of(response) -> dict[str, tuple[float, int]]:
    assert response.status_code == 200, response.content
    return {row["key"]: (row["gpu_seconds"], row["tasks"]) for row in response.json()["rows"]}


def test_usage_is_grouped_by_day_workflow_server_and_user(world):
    ada = world["ada"]
    assert rows_of(usage(ada, group_by="day")) == {
        "2026-11-03": (40.0, 2),
        "2026-11-04": (5.0, 1),
    }
    assert rows_of(usage(ada, group_by="workflow")) == {"Portraits": (40.0, 2), "Upscale": (5.0, 1)}
    assert rows_of(usage(ada, group_by="server")) == {"h100": (30.0, 1), "t4": (15.0, 1)}
    assert rows_of(usage(ada, group_by="user")) == {"ada": (30.0, 1), "bob": (15.0, 1)}
    total = usage(ada).json()["total"]
    # Task 7's two attempts are two rows of one task.
    assert (total["gpu_seconds"], total["tasks"], total["attempts"]) == (45.0, 2, 3)


def test_a_user_sees_only_their_teams_and_staff_see_every_team(world):
    assert rows_of(usage(world["ada"], group_by="team")) == {"Studio": (45.0, 2)}
    assert rows_of(usage(world["sam"], group_by="team")) == {"Elsewhere": (500.0, 1)}
    staff = make_user("stef", staff=True)
    assert set(rows_of(usage(staff, group_by="team"))) == {"Studio", "Elsewhere"}


def test_another_teams_usage_is_a_404(world):
    response = usage(world["sam"], team=world["studio"].pk)
    assert response.status_code == 404
    assert error_of(response)["type"] == "not_found"


@pytest.mark.parametrize(
    "query",
    [
        {"group_by": "color"},
        {"from": "yesterday"},
        {"from": "2026-11-30", "to": "2026-11-01"},
        {"team": "abc"},
        {"team": "0"},
    ],
)
def test_bad_parameters_are_a_400_envelope(world, query):
    response = usage(world["ada"], **query)
    assert response.status_code == 400
    assert error_of(response)["type"] == "validation_error"


def test_usage_without_a_range_is_this_utc_month(world):
    assert usage(world["ada"]).json()["start"] == "2026-11-01"
    response = caller_for(world["ada"])("GET", "usage")
    assert response.status_code == 200
    assert response.json()["start"].endswith("-01")


def test_the_usage_page_shows_the_teams_totals_by_each_grouping(world):
    client = Client()
    client.force_login(world["bob"])
    page = client.get("/usage/", {"from": "2026-11-01", "to": "2026-11-30"})
    html = page.content.decode()
    assert page.status_code == 200
    for shown in ("Portraits", "Upscale", "h100", "ada", "2026-11-04", "45.0"):
        assert shown in html
    assert "Secret" not in html
    assert 'data-live-topic="team-usage"' in html


def test_the_csv_export_has_one_row_per_group(world):
    client = Client()
    client.force_login(world["ada"])
    response = client.get(
        "/usage/export.csv",
        {
            "team": world["studio"].pk,
            "from": "2026-11-01",
            "to": "2026-11-30",
            "group_by": "server",
        },
    )
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == ["server", "gpu_seconds", "seconds", "tasks", "attempts"]
    assert rows[1:] == [
        ["h100", "30.000", "10.000", "1", "1"],
        ["t4", "15.000", "15.000", "1", "2"],
    ]


def test_another_teams_usage_page_and_export_are_404(world):
    client = Client()
    client.force_login(world["sam"])
    studio = world["studio"].pk
    assert client.get("/usage/", {"team": studio}).status_code == 404
    assert client.get("/usage/export.csv", {"team": studio}).status_code == 404
    assert client.get("/usage/report/", {"team": studio}).status_code == 404


def test_a_user_in_no_team_gets_a_page_that_says_so(world):
    client = Client()
    client.force_login(make_user("loner"))
    response = client.get("/usage/")
    assert response.status_code == 200
    assert "not in a team" in response.content.decode()


def test_a_bad_period_on_the_page_is_a_400_with_the_reason(world):
    client = Client()
    client.force_login(world["ada"])
    response = client.get("/usage/", {"from": "2026-11-30", "to": "2026-11-01"})
    assert response.status_code == 400
    assert "Must not be before" in response.content.decode()
    assert client.get("/usage/export.csv", {"group_by": "color"}).status_code == 400
    assert client.get("/usage/report/", {"from": "soon"}).status_code == 400
