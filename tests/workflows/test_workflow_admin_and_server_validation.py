from __future__ import annotations

import json

import pytest

from servers.models import Server
from teams.models import Role
from tests.factories import make_team, make_template, make_user, make_workflow, shared_workflow
from workflows.models import Workflow

pytestmark = pytest.mark.django_db


def _validate(client, workflow, server) -> str:
    response = client.post(f"/workflows/{workflow.pk}/validate/", {"server": server.pk})
    assert response.status_code == 200
    return response.content.decode()


def test_validate_against_a_server_reports_its_catalogue_errors(client, simulated_server):
    team = make_team()
    client.force_login(make_user(team=team, role=Role.VIEWER))
    bad = make_workflow(team, "Bad", graph=shared_workflow("invalid_value_out_of_range"))
    html = _validate(client, bad, simulated_server)
    assert "Validation against sim-1: problems found" in html
    assert "value_smaller_than_min" in html
    unknown = make_workflow(team, "Unknown", graph=shared_workflow("invalid_unknown_class"))
    assert "NoSuchNode does not exist on sim-1" in _validate(client, unknown, simulated_server)
    good = make_workflow(team, "Good", graph=shared_workflow("invert_blur_scale_save"))
    assert "Validation against sim-1: valid" in _validate(client, good, simulated_server)


def test_validate_against_an_unreachable_server_says_so(client):
    team = make_team()
    client.force_login(make_user(team=team))
    server = Server.objects.create(name="gone", base_url="http://127.0.0.1:9")
    html = _validate(client, make_workflow(team), server)
    assert "could not read /object_info" in html


def test_admin_lists_workflows_with_read_only_versions_and_templates_with_parameters(client):
    team = make_team()
    workflow = make_workflow(team, "Admin me")
    template = make_template(
        workflow.current_version,
        "T",
        parameters=[{"name": "w", "node_id": "1", "input_name": "width", "type": "int"}],
    )
    client.force_login(make_user(superuser=True))
    assert "Admin me" in client.get("/admin/workflows/workflow/").content.decode()
    page = client.get(f"/admin/workflows/workflow/{workflow.pk}/change/").content.decode()
    assert "EmptyImage" in page
    assert client.get("/admin/workflows/workflowversion/add/").status_code == 403
    html = client.get(f"/admin/workflows/template/{template.pk}/change/").content.decode()
    assert 'value="width"' in html


def test_template_suggestions_take_bounds_from_a_chosen_server(client, simulated_server):
    team = make_team()
    client.force_login(make_user(team=team))
    workflow = make_workflow(team, graph=shared_workflow("invert_blur_scale_save"))
    url = f"/workflows/{workflow.pk}/templates/new/"
    plain = client.get(url).content.decode()
    assert 'value="16"' in plain  # built-in lower bound for width
    html = client.get(url, {"server": simulated_server.pk}).content.decode()
    assert "Ask the server" in html
    assert 'name="parameters-0-minimum" value="1"' in html  # EmptyImage's own minimum


def test_create_can_check_against_a_server_and_refuses_what_it_would_reject(
    client, simulated_server
):
    team = make_team()
    client.force_login(make_user(team=team))
    graph = json.dumps(shared_workflow("invalid_missing_input"))
    data = {"team": team.pk, "name": "Checked", "graph_text": graph}
    assert client.post("/workflows/new/", data).status_code == 302  # structure alone is fine
    data |= {"name": "Checked 2", "check_server": simulated_server.pk}
    html = client.post("/workflows/new/", data).content.decode()
    assert "Node 2: Required input is missing: image" in html
    assert not Workflow.objects.filter(name="Checked 2").exists()


def test_create_with_an_unreachable_check_server_says_so_on_that_field(client):
    team = make_team()
    client.force_login(make_user(team=team))
    server = Server.objects.create(name="gone", base_url="http://127.0.0.1:9")
    graph = json.dumps(shared_workflow("empty_save"))
    html = client.post(
        "/workflows/new/",
        {"team": team.pk, "name": "X", "graph_text": graph, "check_server": server.pk},
    ).content.decode()
    assert "gone: could not read /object_info" in html
    assert not Workflow.objects.exists()
