"""The dashboard's first-run checklist and the Generate page (issue 16, part 5)."""

from __future__ import annotations

import re

import pytest

from onboarding.models import ChecklistDismissal
from tests.factories import (
    make_server,
    make_task,
    make_team,
    make_template,
    make_user,
    make_workflow,
)

pytestmark = pytest.mark.django_db


def steps(html: str) -> dict[str, bool]:
    """Step key -> done, as the dashboard shows them ({} when there is no checklist)."""
    return {
        key: done == "true"
        for key, done in re.findall(r'data-step="(\w+)" data-done="(\w+)"', html)
    }


def test_an_empty_installation_shows_every_step_open_with_where_to_do_it(client):
    client.force_login(make_user(staff=True))
    html = client.get("/").content.decode()
    assert steps(html) == {"server": False, "workflow": False, "template": False, "run": False}
    assert 'href="/admin/servers/server/add/"' in html
    assert 'href="/workflows/new/"' in html
    assert "0 of 4 done" in html


def test_steps_tick_off_from_the_real_state_of_the_users_teams(client):
    team = make_team()
    user = make_user(team=team)
    client.force_login(user)
    make_server("gpu-1")
    workflow = make_workflow(team)
    html = client.get("/").content.decode()
    assert steps(html) == {"server": True, "workflow": True, "template": False, "run": False}
    # The open step links to making a template of the workflow just uploaded.
    assert f'href="/workflows/{workflow.pk}/templates/new/"' in html

    template = make_template(workflow.current_version)
    html = client.get("/").content.decode()
    assert steps(html)["template"] is True
    assert f'href="/templates/{template.pk}/submit/"' in html


def test_another_teams_work_does_not_tick_your_steps(client):
    theirs = make_team()
    make_template(make_workflow(theirs).current_version)
    make_task(theirs)
    client.force_login(make_user(team=make_team()))
    assert steps(client.get("/").content.decode())["workflow"] is False


def test_the_checklist_is_gone_once_every_step_is_done(client):
    team = make_team()
    client.force_login(make_user(team=team))
    make_server("gpu-1")
    make_template(make_workflow(team).current_version)
    make_task(team)
    html = client.get("/").content.decode()
    assert 'id="first-run-checklist"' not in html


def test_dismissing_hides_it_for_that_user_only(client):
    team = make_team()
    ada, bob = make_user("ada", team=team), make_user("bob", team=team)
    client.force_login(ada)
    assert client.post("/onboarding/checklist/dismiss").status_code == 302
    assert ChecklistDismissal.objects.filter(user=ada).exists()
    assert 'id="first-run-checklist"' not in client.get("/").content.decode()
    client.post("/onboarding/checklist/dismiss")  # twice is once
    assert ChecklistDismissal.objects.count() == 1
    client.force_login(bob)
    assert 'id="first-run-checklist"' in client.get("/").content.decode()


def test_generate_lists_the_teams_templates_and_workflows_with_their_actions(client):
    team = make_team()
    workflow = make_workflow(team, "Portraits")
    template = make_template(workflow.current_version, "Portrait form")
    make_workflow(make_team(), "Not ours")
    client.force_login(make_user(team=team))
    html = client.get("/generate/").content.decode()
    assert "Portrait form" in html
    assert f'href="/templates/{template.pk}/submit/"' in html
    assert f'href="/workflows/{workflow.pk}/#run"' in html
    assert "Not ours" not in html
    nav = client.get("/generate/").context["navigation"]
    assert {"label": "Generate", "url": "/generate/", "active": True} in nav
