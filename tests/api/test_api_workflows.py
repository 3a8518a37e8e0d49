"""/workflows: list and search, upload (validated like the pages), versions on edit,
delete (refused while tasks use it), and validation against a server's catalogue."""

from __future__ import annotations

import pytest

from servers.models import Server
from tests.api.callers import error_of, fields_named
from tests.factories import make_task, make_template, make_user, make_workflow, shared_workflow
from workflows.models import Workflow

pytestmark = pytest.mark.django_db

UI_EXPORT = {
    "last_node_id": 2,
    "last_link_id": 1,
    "nodes": [{"id": 1, "type": "EmptyImage"}, {"id": 2, "type": "SaveImage"}],
    "links": [[1, 1, 0, 2, 0, "IMAGE"]],
    "version": 0.4,
}
CLOSED_PORT_URL = "http://127.0.0.1:9"


def dangling_link_graph():
    graph = shared_workflow("empty_save")
    graph["2"]["inputs"]["images"] = ["9", 0]
    return graph


def upload(caller, name="Portrait", graph=None, **fields):
    body = {"name": name, "graph": graph or shared_workflow("empty_save")} | fields
    return caller("POST", "workflows", body)


# -- listing and searching -------------------------------------------------------------


def test_members_list_their_teams_workflows_only(world):
    make_workflow(world.team, "Ours")
    make_workflow(world.other_team, "Theirs")
    response = world.viewer("GET", "workflows")
    assert response.status_code == 200
    assert [w["name"] for w in response.json()] == ["Ours"]


def test_a_listed_workflow_has_its_version_nodes_and_models(world):
    make_workflow(world.team, "Ours", description="flat grey")
    (listed,) = world.viewer("GET", "workflows").json()
    assert listed["version"] == 1
    assert listed["versions"] == [1]
    assert set(listed["node_classes"]) == {"EmptyImage", "SaveImage"}
    assert listed["models"] == []
    assert listed["team"] == {"id": world.team.pk, "name": "Studio"}
    assert "graph" not in listed


def test_staff_list_every_teams_workflows(world):
    make_workflow(world.team, "Ours")
    make_workflow(world.other_team, "Theirs")
    assert {w["name"] for w in world.staff("GET", "workflows").json()} == {"Ours", "Theirs"}


@pytest.mark.parametrize(
    ("query", "found"),
    [
        ("portrait", ["Portrait"]),
        ("sdxl", ["Landscape"]),  # a tag
        ("invert", ["Portrait"]),  # a node type
        ("LANDSCAPE wide", ["Landscape"]),  # every word, any case
        ("nothing-like-this", []),
        ("", ["Landscape", "Portrait"]),
    ],
)
def test_q_searches_names_tags_descriptions_and_node_types(world, query, found):
    make_workflow(world.team, "Portrait", graph=shared_workflow("load_invert_save"))
    make_workflow(world.team, "Landscape", description="wide shots", tags=["sdxl"])
    make_workflow(world.other_team, "Portrait elsewhere")
    names = [w["name"] for w in world.member("GET", "workflows", q=query).json()]
    assert names == found


def test_the_team_filter_never_shows_another_teams_workflows(world):
    make_workflow(world.other_team, "Theirs")
    assert world.member("GET", "workflows", team=world.other_team.pk).json() == []


def test_a_bad_team_filter_is_a_validation_error(world):
    response = world.member("GET", "workflows", team="studio")
    assert response.status_code == 400
    assert fields_named(response) == {"team"}


# -- uploading ---------------------------------------------------------------------------


def test_a_member_uploads_a_workflow(world):
    response = upload(world.member, description="grey", tags=["Flat", "test"], note="first")
    assert response.status_code == 201
    body = response.json()
    assert (body["name"], body["description"], body["tags"]) == (
        "Portrait",
        "grey",
        ["flat", "test"],
    )
    assert (body["version"], body["versions"]) == (1, [1])
    assert set(body["node_classes"]) == {"EmptyImage", "SaveImage"}
    assert body["models"] == []
    assert body["graph"] == shared_workflow("empty_save")
    assert body["team"]["id"] == world.team.pk
    workflow = Workflow.objects.get(pk=body["id"])
    assert workflow.created_by == world.users["member"]
    assert workflow.current_version.note == "first"


def test_an_uploaded_workflow_lists_the_models_it_loads(world):
    from tests.factories import CHECKPOINT, trivial_graph

    body = upload(world.admin, graph=trivial_graph()).json()
    assert {"folder": "checkpoints", "name": CHECKPOINT} in body["models"]


def test_a_viewer_cannot_upload_a_workflow(world):
    response = upload(world.viewer)
    assert response.status_code == 403
    assert error_of(response)["type"] == "permission_denied"
    assert not Workflow.objects.exists()


def test_uploading_needs_credentials(world):
    assert upload(world.anonymous).status_code == 401


def test_uploading_into_another_teams_is_a_404(world):
    response = upload(world.stranger, team=world.team.pk)
    assert response.status_code == 404
    assert error_of(response)["type"] == "not_found"
    assert response.json() == upload(world.stranger, team=999999).json()
    assert not Workflow.objects.exists()


def test_someone_in_several_teams_must_name_one(world):
    response = upload(world.staff)  # staff may create in every team
    assert response.status_code == 400
    assert fields_named(response) == {"team"}
    assert upload(world.staff, team=world.other_team.pk).status_code == 201


def test_a_user_in_no_team_cannot_upload(world):
    from tests.api.callers import caller_for

    response = upload(caller_for(make_user("loner")))
    assert response.status_code == 403


def test_an_upload_without_name_or_graph_names_both(world):
    response = world.member("POST", "workflows", {"description": "?"})
    assert response.status_code == 400
    assert fields_named(response) == {"name", "graph"}


def test_a_graph_that_is_not_an_object_is_a_validation_error(world):
    response = upload(world.member, graph=[1, 2])
    assert response.status_code == 400
    assert fields_named(response) == {"graph"}


@pytest.mark.parametrize(
    ("graph", "where"),
    [
        (shared_workflow("invalid_no_outputs"), "errors"),
        (UI_EXPORT, "errors"),
        (dangling_link_graph(), "node_errors"),
    ],
    ids=["no-outputs", "ui-format", "dangling-link"],
)
def test_a_broken_graph_is_rejected_with_its_errors(world, graph, where):
    response = upload(world.member, graph=graph)
    assert response.status_code == 400
    error = error_of(response)
    assert error["type"] == "validation_error"
    assert fields_named(response) == {"graph"}
    assert error["details"][where]
    assert not Workflow.objects.exists()


def test_a_dangling_link_is_reported_on_its_node(world):
    details = error_of(upload(world.member, graph=dangling_link_graph()))["details"]
    (problem,) = details["node_errors"]["2"]
    assert problem["input_name"] == "images"
    assert "not in the workflow" in problem["message"]


def test_a_ui_format_export_says_how_to_export_the_api_format(world):
    details = error_of(upload(world.member, graph=UI_EXPORT))["details"]
    assert "Export (API)" in details["errors"][0]


def test_an_upload_checked_against_a_server_reports_unknown_nodes(world, simulated_server):
    graph = shared_workflow("invalid_unknown_class")
    response = upload(world.member, graph=graph, check_server=simulated_server.pk)
    assert response.status_code == 400
    node_errors = error_of(response)["details"]["node_errors"]
    assert "NoSuchNode does not exist on sim-1" in node_errors["2"][0]["message"]
    # Without the server, the structure alone is fine.
    assert upload(world.member, graph=graph).status_code == 201


def test_names_are_unique_in_a_team_whatever_the_case(world):
    make_workflow(world.team, "Portrait")
    response = upload(world.member, name="PORTRAIT")
    assert response.status_code == 400
    assert fields_named(response) == {"name"}
    assert upload(world.stranger, name="Portrait").status_code == 201  # another team


def test_every_problem_of_an_upload_is_listed(world):
    make_workflow(world.team, "Portrait")
    response = upload(world.member, graph=dangling_link_graph())
    assert fields_named(response) == {"name", "graph"}
    assert error_of(response)["details"]["node_errors"]


# -- reading one ---------------------------------------------------------------------------


def test_a_viewer_reads_a_workflow_with_its_graph(world):
    workflow = make_workflow(world.team, "Ours")
    response = world.viewer("GET", f"workflows/{workflow.pk}")
    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["name"], body["version"]) == (workflow.pk, "Ours", 1)
    assert body["graph"] == shared_workflow("empty_save")


def test_another_teams_workflow_is_a_404_like_a_missing_one(world):
    theirs = make_workflow(world.other_team)
    response = world.member("GET", f"workflows/{theirs.pk}")
    assert response.status_code == 404
    assert response.json() == world.member("GET", "workflows/999999").json()


def test_reading_a_workflow_needs_credentials(world):
    workflow = make_workflow(world.team)
    assert world.anonymous("GET", f"workflows/{workflow.pk}").status_code == 401


# -- changing -----------------------------------------------------------------------------


def test_a_changed_graph_is_a_new_version(world):
    workflow = make_workflow(world.team, "Ours")
    graph = shared_workflow("empty_save")
    graph["1"]["inputs"]["width"] = 640
    response = world.member("PATCH", f"workflows/{workflow.pk}", {"graph": graph, "note": "wider"})
    assert response.status_code == 200
    body = response.json()
    assert (body["version"], body["versions"]) == (2, [1, 2])
    assert body["graph"]["1"]["inputs"]["width"] == 640
    assert workflow.versions.get(number=2).note == "wider"
    assert workflow.versions.get(number=1).graph == shared_workflow("empty_save")


def test_details_alone_do_not_make_a_version(world):
    workflow = make_workflow(world.team, "Ours", tags=["old"])
    response = world.member(
        "PATCH",
        f"workflows/{workflow.pk}",
        {"name": "Renamed", "description": "new words", "graph": shared_workflow("empty_save")},
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["name"], body["description"], body["tags"]) == ("Renamed", "new words", ["old"])
    assert body["versions"] == [1]


def test_renaming_onto_another_workflows_name_is_a_400(world):
    make_workflow(world.team, "Taken")
    workflow = make_workflow(world.team, "Ours")
    response = world.member("PATCH", f"workflows/{workflow.pk}", {"name": "taken"})
    assert response.status_code == 400
    assert fields_named(response) == {"name"}
    workflow.refresh_from_db()
    assert workflow.name == "Ours"


def test_a_broken_new_graph_is_rejected_and_keeps_the_version(world):
    workflow = make_workflow(world.team)
    response = world.member("PATCH", f"workflows/{workflow.pk}", {"graph": dangling_link_graph()})
    assert response.status_code == 400
    assert error_of(response)["details"]["node_errors"]
    assert workflow.versions.count() == 1


def test_an_empty_name_is_a_validation_error(world):
    workflow = make_workflow(world.team)
    response = world.member("PATCH", f"workflows/{workflow.pk}", {"name": ""})
    assert response.status_code == 400
    assert fields_named(response) == {"name"}


def test_a_viewer_cannot_change_a_workflow(world):
    workflow = make_workflow(world.team, "Ours")
    response = world.viewer("PATCH", f"workflows/{workflow.pk}", {"name": "Mine"})
    assert response.status_code == 403
    workflow.refresh_from_db()
    assert workflow.name == "Ours"


def test_changing_another_teams_workflow_is_a_404(world):
    theirs = make_workflow(world.other_team, "Theirs")
    response = world.admin("PATCH", f"workflows/{theirs.pk}", {"name": "Ours now"})
    assert response.status_code == 404
    theirs.refresh_from_db()
    assert theirs.name == "Theirs"


def test_changing_a_workflow_needs_credentials(world):
    workflow = make_workflow(world.team)
    assert world.anonymous("PATCH", f"workflows/{workflow.pk}", {"name": "x"}).status_code == 401


# -- deleting -----------------------------------------------------------------------------


def test_a_team_admin_deletes_a_workflow_with_its_templates(world):
    workflow = make_workflow(world.team)
    make_template(workflow.current_version)
    response = world.admin("DELETE", f"workflows/{workflow.pk}")
    assert response.status_code == 204
    assert not Workflow.objects.filter(pk=workflow.pk).exists()
    assert not world.team.templates.exists()


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_only_team_admins_delete_workflows(world, role):
    workflow = make_workflow(world.team)
    response = getattr(world, role)("DELETE", f"workflows/{workflow.pk}")
    assert response.status_code == 403
    assert Workflow.objects.filter(pk=workflow.pk).exists()


def test_deleting_another_teams_workflow_is_a_404(world):
    theirs = make_workflow(world.other_team)
    assert world.admin("DELETE", f"workflows/{theirs.pk}").status_code == 404
    assert Workflow.objects.filter(pk=theirs.pk).exists()


def test_a_workflow_tasks_ran_is_not_deleted(world):
    workflow = make_workflow(world.team)
    make_task(world.team, workflow_version=workflow.current_version)
    response = world.admin("DELETE", f"workflows/{workflow.pk}")
    assert response.status_code == 409
    error = error_of(response)
    assert error["type"] == "conflict"
    assert error["details"] == {"tasks": 1}
    assert Workflow.objects.filter(pk=workflow.pk).exists()


def test_deleting_a_workflow_needs_credentials(world):
    workflow = make_workflow(world.team)
    assert world.anonymous("DELETE", f"workflows/{workflow.pk}").status_code == 401


# -- validating ---------------------------------------------------------------------------


def test_a_viewer_validates_a_workflows_structure(world):
    workflow = make_workflow(world.team)
    response = world.viewer("POST", f"workflows/{workflow.pk}/validate", {})
    assert response.status_code == 200
    assert response.json() | {"checked_against": ""} == {
        "valid": True,
        "errors": [],
        "node_errors": {},
        "checked_against": "",
    }


def test_validating_a_stored_broken_graph_lists_its_errors(world):
    workflow = make_workflow(world.team, graph=shared_workflow("invalid_no_outputs"))
    body = world.viewer("POST", f"workflows/{workflow.pk}/validate", {}).json()
    assert body["valid"] is False
    assert "no outputs" in body["errors"][0]


@pytest.mark.parametrize(
    ("name", "node", "kind"),
    [
        ("invalid_unknown_class", "2", "invalid_prompt"),
        ("invalid_missing_input", "2", "required_input_missing"),
        ("invalid_value_out_of_range", "1", "value_smaller_than_min"),
    ],
)
def test_validating_against_a_server_checks_its_catalogue(
    world, simulated_server, name, node, kind
):
    workflow = make_workflow(world.team, graph=shared_workflow(name))
    structure = world.member("POST", f"workflows/{workflow.pk}/validate", {}).json()
    assert structure["valid"] is True
    response = world.member(
        "POST", f"workflows/{workflow.pk}/validate", {"server": simulated_server.pk}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["valid"] is False
    assert body["checked_against"] == "sim-1"
    assert kind in {problem["type"] for problem in body["node_errors"][node]}


def test_a_good_graph_is_valid_on_a_server(world, simulated_server):
    workflow = make_workflow(world.team, graph=shared_workflow("invert_blur_scale_save"))
    body = world.member(
        "POST", f"workflows/{workflow.pk}/validate", {"server": simulated_server.pk}
    ).json()
    assert (body["valid"], body["checked_against"]) == (True, "sim-1")


def test_validating_against_an_unreachable_server_says_so(world):
    server = Server.objects.create(name="gone", base_url=CLOSED_PORT_URL)
    workflow = make_workflow(world.team)
    body = world.member("POST", f"workflows/{workflow.pk}/validate", {"server": server.pk}).json()
    assert body["valid"] is False
    assert "could not read /object_info" in body["errors"][0]


def test_an_older_version_can_be_validated(world):
    workflow = make_workflow(world.team, graph=shared_workflow("invalid_no_outputs"))
    from tests.factories import add_version

    add_version(workflow, shared_workflow("empty_save"))
    path = f"workflows/{workflow.pk}/validate"
    assert world.member("POST", path, {}).json()["valid"] is True
    assert world.member("POST", path, {"version": 1}).json()["valid"] is False
    assert world.member("POST", path, {"version": 7}).status_code == 404


@pytest.mark.parametrize("enabled", [False, None], ids=["disabled", "missing"])
def test_validating_against_a_disabled_or_missing_server_is_a_404(world, enabled):
    server_id = 999999
    if enabled is not None:
        server_id = Server.objects.create(name="off", base_url=CLOSED_PORT_URL, enabled=False).pk
    workflow = make_workflow(world.team)
    response = world.member("POST", f"workflows/{workflow.pk}/validate", {"server": server_id})
    assert response.status_code == 404


def test_a_bad_server_id_is_a_validation_error(world):
    workflow = make_workflow(world.team)
    response = world.member("POST", f"workflows/{workflow.pk}/validate", {"server": "sim-1"})
    assert response.status_code == 400
    assert fields_named(response) == {"server"}


def test_validating_another_teams_workflow_is_a_404(world):
    theirs = make_workflow(world.other_team)
    assert world.member("POST", f"workflows/{theirs.pk}/validate", {}).status_code == 404


def test_validating_needs_credentials(world):
    workflow = make_workflow(world.team)
    assert world.anonymous("POST", f"workflows/{workflow.pk}/validate", {}).status_code == 401
