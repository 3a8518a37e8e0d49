from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from tasks.models import Task
from teams.models import Role
from tests.factories import (
    add_version,
    make_team,
    make_template,
    make_user,
    make_workflow,
    shared_workflow,
)
from workflows.models import Workflow, WorkflowVersion

pytestmark = pytest.mark.django_db


def _post_workflow(client, **data):
    return client.post("/workflows/new/", data)


def test_list_shows_the_teams_workflows_and_searches_names_and_node_types(client, team, member):
    make_workflow(team, "Portraits", description="soft light")
    make_workflow(team, "Loader", graph=shared_workflow("load_invert_save"))
    make_workflow(make_team("Other"), "Secret")
    client.force_login(member)
    html = client.get("/workflows/").content.decode()
    assert "Portraits" in html
    assert "Loader" in html
    assert "Secret" not in html
    by_node = client.get("/workflows/", {"q": "LoadImage"}).content.decode()
    assert "Loader" in by_node
    assert "Portraits" not in by_node
    by_description = client.get("/workflows/", {"q": "soft"}).content.decode()
    assert "Portraits" in by_description
    assert "Loader" not in by_description


def test_create_by_upload_saves_version_one_with_derived_needs(client, team, member):
    client.force_login(member)
    upload = SimpleUploadedFile(
        "wf.json", json.dumps(shared_workflow("load_invert_save")).encode(), "application/json"
    )
    response = client.post(
        "/workflows/new/",
        {"team": team.pk, "name": "Invert", "tags": "Demo, invert", "graph_file": upload},
    )
    workflow = Workflow.objects.get(name="Invert")
    assert response.status_code == 302
    assert workflow.tags == ["demo", "invert"]
    assert workflow.current_version.number == 1
    assert "LoadImage" in workflow.current_version.node_classes
    detail = client.get(f"/workflows/{workflow.pk}/").content.decode()
    assert "← node 1 output 0" in detail
    assert "LoadImage" in detail


def test_create_by_paste_and_refuse_ui_format_with_the_export_hint(client, team, member):
    client.force_login(member)
    ok = _post_workflow(
        client, team=team.pk, name="Pasted", graph_text=json.dumps(shared_workflow("empty_save"))
    )
    assert ok.status_code == 302
    ui = {"nodes": [{"id": 1}], "links": [], "last_node_id": 1}
    refused = _post_workflow(client, team=team.pk, name="UI", graph_text=json.dumps(ui))
    assert refused.status_code == 200
    assert "Export (API)" in refused.content.decode()
    assert not Workflow.objects.filter(name="UI").exists()


def test_create_refuses_a_graph_without_outputs_with_the_reason(client, team, member):
    client.force_login(member)
    response = _post_workflow(
        client,
        team=team.pk,
        name="Bad",
        graph_text=json.dumps(shared_workflow("invalid_no_outputs")),
    )
    assert "at least one output node" in response.content.decode()
    assert not Workflow.objects.exists()


def test_user_in_several_teams_picks_the_team_and_cannot_create_in_a_foreign_team(client, member):
    second, foreign = make_team("Second"), make_team("Foreign")
    from teams.models import Membership

    Membership.objects.create(team=second, user=member, role=Role.MEMBER)
    client.force_login(member)
    page = client.get("/workflows/new/").content.decode()
    assert "Second" in page
    assert "Studio" in page
    assert "Foreign" not in page
    graph = json.dumps(shared_workflow("empty_save"))
    response = _post_workflow(client, team=foreign.pk, name="Sneaky", graph_text=graph)
    assert response.status_code == 200
    assert not Workflow.objects.filter(name="Sneaky").exists()
    _post_workflow(client, team=second.pk, name="Mine", graph_text=graph)
    assert Workflow.objects.get(name="Mine").team == second


def test_viewer_can_read_but_not_create_edit_or_run(client, team):
    workflow = make_workflow(team, "Read only")
    viewer = make_user(team=team, role=Role.VIEWER)
    client.force_login(viewer)
    assert client.get(f"/workflows/{workflow.pk}/").status_code == 200
    assert client.get("/workflows/new/").status_code == 403
    assert client.get(f"/workflows/{workflow.pk}/edit/").status_code == 403
    assert (
        client.post(f"/workflows/{workflow.pk}/run/", {"priority": 1, "count": 1}).status_code
        == 403
    )


def test_other_teams_workflows_and_templates_are_404_by_id(client, member):
    foreign = make_workflow(make_team("Foreign"), "Theirs")
    template = make_template(foreign.current_version)
    client.force_login(member)
    for url in [
        f"/workflows/{foreign.pk}/",
        f"/workflows/{foreign.pk}/edit/",
        f"/workflows/{foreign.pk}/delete/",
        f"/workflows/{foreign.pk}/templates/new/",
        f"/templates/{template.pk}/",
        f"/templates/{template.pk}/edit/",
        f"/templates/{template.pk}/delete/",
    ]:
        assert client.get(url).status_code == 404, url
    assert (
        client.post(f"/workflows/{foreign.pk}/run/", {"priority": 1, "count": 1}).status_code == 404
    )


def test_editing_the_graph_makes_version_two_and_metadata_edits_do_not(client, team, member):
    workflow = make_workflow(team, "Evolving")
    client.force_login(member)
    client.post(f"/workflows/{workflow.pk}/edit/", {"name": "Evolved", "description": "new"})
    workflow.refresh_from_db()
    assert workflow.name == "Evolved"
    assert workflow.versions.count() == 1
    graph = shared_workflow("empty_save")
    graph["1"]["inputs"]["width"] = 256
    client.post(
        f"/workflows/{workflow.pk}/edit/",
        {"name": "Evolved", "graph_text": json.dumps(graph), "note": "smaller"},
    )
    workflow.refresh_from_db()
    assert workflow.current_version.number == 2
    assert workflow.current_version.note == "smaller"
    assert workflow.versions.get(number=1).graph["1"]["inputs"]["width"] == 512


def test_versions_are_immutable(team):
    version = make_workflow(team).current_version
    version.graph = {}
    with pytest.raises(ValidationError):
        version.save()
    assert WorkflowVersion.objects.get(pk=version.pk).graph["2"]["class_type"] == "SaveImage"


def test_delete_is_refused_while_tasks_reference_a_version(client, team):
    workflow = make_workflow(team, "Used")
    Task.objects.create(team=team, workflow_version=workflow.current_version, graph={})
    client.force_login(make_user(team=team, role=Role.ADMIN))
    page = client.get(f"/workflows/{workflow.pk}/delete/").content.decode()
    assert "cannot be deleted" in page
    response = client.post(f"/workflows/{workflow.pk}/delete/", follow=True)
    assert "1 task ran its versions" in response.content.decode()
    assert Workflow.objects.filter(pk=workflow.pk).exists()


def test_team_admin_deletes_a_workflow_with_its_templates_members_cannot(client, team, member):
    workflow = make_workflow(team, "Gone")
    make_template(workflow.current_version)
    client.force_login(member)
    assert client.post(f"/workflows/{workflow.pk}/delete/").status_code == 403
    client.force_login(make_user(team=team, role=Role.ADMIN))
    assert client.post(f"/workflows/{workflow.pk}/delete/").status_code == 302
    assert not Workflow.objects.filter(pk=workflow.pk).exists()


def test_detail_shows_versions_templates_and_server_capabilities(client, team, member):
    from servers.models import Server, ServerState

    workflow = make_workflow(team, "Shown")
    add_version(workflow, shared_workflow("batch2_two_outputs"))
    make_template(workflow.current_version, "Quick")
    able = Server.objects.create(name="able", base_url="http://127.0.0.1:1")
    lacking = Server.objects.create(name="lacking", base_url="http://127.0.0.1:2")
    # As the monitor writes them: capabilities_at says the lists are known.
    ServerState.objects.filter(server=able).update(
        node_classes=["EmptyImage", "SaveImage", "ImageInvert", "PreviewImage"],
        capabilities_at=timezone.now(),
    )
    ServerState.objects.filter(server=lacking).update(
        node_classes=["EmptyImage", "SaveImage"], capabilities_at=timezone.now()
    )
    client.force_login(member)
    html = client.get(f"/workflows/{workflow.pk}/").content.decode()
    assert "v2" in html
    assert "v1" in html
    assert "Quick" in html
    assert "missing nodes: ImageInvert, PreviewImage" in html
    old = client.get(f"/workflows/{workflow.pk}/", {"version": 1}).content.decode()
    assert "not the current one" in old
