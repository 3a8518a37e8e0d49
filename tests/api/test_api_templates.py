"""/templates: list, create with parameters checked against the graph, change, delete,
and preview (the graph rendered with given values)."""

from __future__ import annotations

import pytest

from tests.api.callers import error_of, fields_named
from tests.factories import (
    add_version,
    empty_save_template,
    make_template,
    make_workflow,
    shared_workflow,
)
from workflows.models import Template

pytestmark = pytest.mark.django_db

WIDTH = {"name": "width", "node": "1", "input": "width", "type": "int", "min": 16, "max": 2048}
COLOR = {"name": "color", "node": "1", "input": "color", "type": "choice", "default": 0,
         "choices": [0, 255, 65280]}  # fmt: skip
PREFIX = {"name": "prefix", "node": "2", "input": "filename_prefix", "type": "text"}


def create(caller, workflow, name="Sizes", parameters=None, **fields):
    body = {"workflow": workflow.pk, "name": name, "parameters": parameters or []} | fields
    return caller("POST", "templates", body)


# -- listing -------------------------------------------------------------------------------


def test_members_list_their_teams_templates_only(world):
    ours = empty_save_template(world.team)
    empty_save_template(world.other_team)
    response = world.viewer("GET", "templates")
    assert response.status_code == 200
    (listed,) = response.json()
    assert (listed["id"], listed["name"]) == (ours.pk, ours.name)
    assert [p["name"] for p in listed["parameters"]] == ["width", "color", "prefix"]
    assert listed["team"]["id"] == world.team.pk


def test_templates_are_found_by_name_or_workflow(world):
    portrait = make_workflow(world.team, "Portrait")
    landscape = make_workflow(world.team, "Landscape")
    make_template(portrait.current_version, "Faces")
    make_template(landscape.current_version, "Hills")
    names = lambda **query: [t["name"] for t in world.member("GET", "templates", **query).json()]  # noqa: E731
    assert names(q="faces") == ["Faces"]
    assert names(q="landscape") == ["Hills"]
    assert names(workflow=portrait.pk) == ["Faces"]
    assert names() == ["Faces", "Hills"]


def test_listing_templates_needs_credentials(world):
    assert world.anonymous("GET", "templates").status_code == 401


# -- creating ------------------------------------------------------------------------------


def test_a_member_creates_a_template_with_parameters(world):
    workflow = make_workflow(world.team, "Flat")
    response = create(world.member, workflow, parameters=[WIDTH | {"default": 512}, COLOR, PREFIX])
    assert response.status_code == 201
    body = response.json()
    assert (body["name"], body["version"]) == ("Sizes", 1)
    assert body["workflow"] == {"id": workflow.pk, "name": "Flat"}
    width, color, prefix = body["parameters"]  # in the order given
    assert (width["node"], width["input"], width["type"]) == ("1", "width", "int")
    assert (width["default"], width["min"], width["max"]) == (512, 16, 2048)
    assert (color["default"], color["choices"]) == (0, [0, 255, 65280])
    assert (prefix["default"], prefix["choices"]) == ("", [])  # text: empty by default
    assert Template.objects.get(pk=body["id"]).team == world.team


def test_a_template_can_use_an_older_version(world):
    workflow = make_workflow(world.team)
    add_version(workflow, shared_workflow("load_invert_save"))
    body = create(world.member, workflow, version=1, parameters=[WIDTH]).json()
    assert body["version"] == 1
    assert create(world.member, workflow, name="Nope", version=9).status_code == 404


def test_a_viewer_cannot_create_a_template(world):
    response = create(world.viewer, make_workflow(world.team))
    assert response.status_code == 403
    assert error_of(response)["type"] == "permission_denied"
    assert not Template.objects.exists()


def test_a_template_on_another_teams_workflow_is_a_404(world):
    response = create(world.admin, make_workflow(world.other_team))
    assert response.status_code == 404
    assert (
        response.json()
        == world.admin("POST", "templates", {"workflow": 999999, "name": "x"}).json()
    )


def test_creating_a_template_needs_credentials(world):
    assert create(world.anonymous, make_workflow(world.team)).status_code == 401


def test_a_template_without_workflow_or_name_names_both(world):
    response = world.member("POST", "templates", {"parameters": []})
    assert response.status_code == 400
    assert fields_named(response) == {"workflow", "name"}


def test_template_names_are_unique_in_a_team(world):
    workflow = make_workflow(world.team)
    make_template(workflow.current_version, "Sizes")
    response = create(world.member, workflow, name="sizes")
    assert response.status_code == 400
    assert fields_named(response) == {"name"}


@pytest.mark.parametrize(
    ("parameter", "field"),
    [
        (WIDTH | {"node": "9"}, "parameters[1].node"),
        (WIDTH | {"input": "depth"}, "parameters[1].input"),
        (PREFIX | {"node": "2", "input": "images"}, "parameters[1].input"),  # a link
        (WIDTH | {"min": 100, "max": 10}, "parameters[1].max"),
        (WIDTH | {"default": 4096}, "parameters[1].default"),
        (WIDTH | {"default": "wide"}, "parameters[1].default"),
        (COLOR | {"choices": []}, "parameters[1].choices"),
        (COLOR | {"default": 7}, "parameters[1].default"),
        (WIDTH | {"name": "has space"}, "parameters[1].name"),
    ],
    ids=[
        "no-such-node",
        "no-such-input",
        "linked-input",
        "max-below-min",
        "default-out-of-range",
        "default-not-a-number",
        "choice-without-choices",
        "default-not-a-choice",
        "bad-name",
    ],
)
def test_a_bad_parameter_is_named_by_its_index_and_field(world, parameter, field):
    workflow = make_workflow(world.team)
    response = create(world.member, workflow, parameters=[PREFIX, parameter])
    assert response.status_code == 400
    assert error_of(response)["type"] == "validation_error"
    assert field in fields_named(response)
    assert not Template.objects.exists()


def test_a_seed_default_beyond_2_64_minus_1_is_refused(world):
    workflow = make_workflow(world.team, graph=shared_workflow("slow_progress"))
    seed = {"name": "seed", "node": "2", "input": "nonce", "type": "seed", "default": 2**64}
    response = create(world.member, workflow, parameters=[seed])
    assert fields_named(response) == {"parameters[0].default"}
    assert str(2**64 - 1) in error_of(response)["message"]


def test_two_parameters_on_one_input_are_refused(world):
    workflow = make_workflow(world.team)
    response = create(world.member, workflow, parameters=[WIDTH, WIDTH | {"name": "w2"}])
    assert response.status_code == 400
    assert fields_named(response) == {"parameters[1].input"}


def test_two_parameters_with_one_name_are_refused(world):
    workflow = make_workflow(world.team)
    response = create(world.member, workflow, parameters=[WIDTH, PREFIX | {"name": "width"}])
    assert response.status_code == 400
    assert any(field.startswith("parameters[1]") for field in fields_named(response))
    assert "duplicate" in error_of(response)["message"]


def test_every_bad_parameter_is_listed_at_once(world):
    workflow = make_workflow(world.team)
    make_template(workflow.current_version, "Sizes")
    response = create(
        world.member, workflow, parameters=[WIDTH | {"node": "9"}, COLOR | {"choices": [1, 2]}]
    )
    assert fields_named(response) == {"name", "parameters[0].node", "parameters[1].default"}


def test_an_unknown_parameter_type_is_a_validation_error(world):
    response = create(world.member, make_workflow(world.team), parameters=[WIDTH | {"type": "x"}])
    assert response.status_code == 400
    (problem,) = error_of(response)["details"]["fields"]
    assert problem["field"].startswith("parameters")
    assert problem["field"].endswith("type")


# -- reading, changing, deleting -------------------------------------------------------------


def test_a_viewer_reads_a_template(world):
    template = empty_save_template(world.team)
    response = world.viewer("GET", f"templates/{template.pk}")
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == template.pk
    assert body["parameters"][0] == {
        "name": "width",
        "label": "",
        "help": "",
        "node": "1",
        "input": "width",
        "type": "int",
        "default": 512,
        "min": 1.0,
        "max": 2048.0,
        "choices": [],
    }


def test_another_teams_template_is_a_404_like_a_missing_one(world):
    theirs = empty_save_template(world.other_team)
    response = world.admin("GET", f"templates/{theirs.pk}")
    assert response.status_code == 404
    assert response.json() == world.admin("GET", "templates/999999").json()


def test_reading_a_template_needs_credentials(world):
    template = empty_save_template(world.team)
    assert world.anonymous("GET", f"templates/{template.pk}").status_code == 401


def test_a_member_renames_a_template_and_keeps_its_parameters(world):
    template = empty_save_template(world.team)
    response = world.member("PATCH", f"templates/{template.pk}", {"name": "Renamed"})
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "Renamed"
    assert [p["name"] for p in body["parameters"]] == ["width", "color", "prefix"]


def test_new_parameters_replace_the_old_ones(world):
    template = empty_save_template(world.team)
    response = world.member("PATCH", f"templates/{template.pk}", {"parameters": [PREFIX]})
    assert response.status_code == 200
    assert [p["name"] for p in response.json()["parameters"]] == ["prefix"]
    assert list(template.parameters.values_list("name", flat=True)) == ["prefix"]


def test_moving_to_a_version_without_the_inputs_is_refused(world):
    template = empty_save_template(world.team)
    add_version(template.workflow_version.workflow, shared_workflow("load_invert_save"))
    response = world.member("PATCH", f"templates/{template.pk}", {"version": 2})
    assert response.status_code == 400
    assert any(field.startswith("parameters[0].") for field in fields_named(response))
    template.refresh_from_db()
    assert template.workflow_version.number == 1


def test_parameters_can_be_replaced_under_the_same_names(world):
    template = empty_save_template(world.team)
    parameters = [COLOR, WIDTH | {"max": 1024, "default": 256}]
    response = world.member("PATCH", f"templates/{template.pk}", {"parameters": parameters})
    assert response.status_code == 200
    color, width = response.json()["parameters"]
    assert (color["name"], width["name"], width["max"], width["default"]) == (
        "color",
        "width",
        1024,
        256,
    )


def test_a_template_moves_to_a_version_that_has_its_inputs(world):
    template = empty_save_template(world.team)
    graph = shared_workflow("empty_save")
    graph["1"]["inputs"]["height"] = 768
    add_version(template.workflow_version.workflow, graph)
    response = world.member("PATCH", f"templates/{template.pk}", {"version": 2})
    assert response.status_code == 200
    body = response.json()
    assert body["version"] == 2
    assert [p["name"] for p in body["parameters"]] == ["width", "color", "prefix"]
    assert body["parameters"][0]["default"] == 512


def test_a_bad_new_parameter_keeps_the_old_ones(world):
    template = empty_save_template(world.team)
    response = world.member(
        "PATCH", f"templates/{template.pk}", {"parameters": [WIDTH | {"input": "depth"}]}
    )
    assert response.status_code == 400
    assert fields_named(response) == {"parameters[0].input"}
    assert template.parameters.count() == 3


def test_renaming_onto_another_templates_name_is_a_400(world):
    template = empty_save_template(world.team)
    make_template(template.workflow_version, "Taken")
    response = world.member("PATCH", f"templates/{template.pk}", {"name": "TAKEN"})
    assert response.status_code == 400
    assert fields_named(response) == {"name"}


def test_a_viewer_cannot_change_a_template(world):
    template = empty_save_template(world.team)
    response = world.viewer("PATCH", f"templates/{template.pk}", {"name": "Mine"})
    assert response.status_code == 403
    template.refresh_from_db()
    assert template.name != "Mine"


def test_changing_another_teams_template_is_a_404(world):
    theirs = empty_save_template(world.other_team)
    assert world.admin("PATCH", f"templates/{theirs.pk}", {"name": "x"}).status_code == 404


def test_changing_a_template_needs_credentials(world):
    template = empty_save_template(world.team)
    assert world.anonymous("PATCH", f"templates/{template.pk}", {"name": "x"}).status_code == 401


def test_a_team_admin_deletes_a_template(world):
    template = empty_save_template(world.team)
    assert world.admin("DELETE", f"templates/{template.pk}").status_code == 204
    assert not Template.objects.filter(pk=template.pk).exists()


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_only_team_admins_delete_templates(world, role):
    template = empty_save_template(world.team)
    assert getattr(world, role)("DELETE", f"templates/{template.pk}").status_code == 403
    assert Template.objects.filter(pk=template.pk).exists()


def test_deleting_another_teams_template_is_a_404(world):
    theirs = empty_save_template(world.other_team)
    assert world.admin("DELETE", f"templates/{theirs.pk}").status_code == 404
    assert Template.objects.filter(pk=theirs.pk).exists()


def test_deleting_a_template_needs_credentials(world):
    template = empty_save_template(world.team)
    assert world.anonymous("DELETE", f"templates/{template.pk}").status_code == 401


# -- preview -------------------------------------------------------------------------------


def test_a_preview_puts_the_values_into_the_graph(world):
    template = empty_save_template(world.team)
    response = world.viewer(
        "POST", f"templates/{template.pk}/preview", {"params": {"width": "640", "color": 255}}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["graph"]["1"]["inputs"]["width"] == 640
    assert body["graph"]["1"]["inputs"]["color"] == 255
    assert body["graph"]["2"]["inputs"]["filename_prefix"] == "comfyweb_empty"  # the default
    assert body["params"] == {"width": 640, "color": 255, "prefix": "comfyweb_empty"}
    assert body["changes"]
    template.workflow_version.refresh_from_db()
    assert template.workflow_version.graph["1"]["inputs"]["width"] == 512  # untouched


def test_a_preview_without_values_uses_the_defaults(world):
    template = empty_save_template(world.team)
    body = world.member("POST", f"templates/{template.pk}/preview", {}).json()
    assert body["graph"] == shared_workflow("empty_save") | {
        "1": shared_workflow("empty_save")["1"]
        | {"inputs": shared_workflow("empty_save")["1"]["inputs"] | {"color": 0}}
    }


@pytest.mark.parametrize(
    ("params", "fields"),
    [
        ({"width": 4096}, {"params.width"}),
        ({"width": "wide"}, {"params.width"}),
        ({"color": 7}, {"params.color"}),
        ({"height": 64}, {"params.height"}),
        ({"width": 0, "color": 1, "depth": 3}, {"params.width", "params.color", "params.depth"}),
    ],
    ids=["too-big", "not-a-number", "not-a-choice", "unknown", "all-at-once"],
)
def test_a_bad_value_is_named_in_the_preview_error(world, params, fields):
    template = empty_save_template(world.team)
    response = world.member("POST", f"templates/{template.pk}/preview", {"params": params})
    assert response.status_code == 400
    assert error_of(response)["type"] == "validation_error"
    assert fields_named(response) == fields


def test_a_missing_value_without_default_is_required(world):
    workflow = make_workflow(world.team)
    template = make_template(
        workflow.current_version,
        parameters=[{"name": "width", "node_id": "1", "input_name": "width", "type": "int"}],
    )
    response = world.member("POST", f"templates/{template.pk}/preview", {"params": {}})
    assert response.status_code == 400
    assert fields_named(response) == {"params.width"}


def test_params_must_be_an_object(world):
    template = empty_save_template(world.team)
    response = world.member("POST", f"templates/{template.pk}/preview", {"params": [1]})
    assert response.status_code == 400
    assert fields_named(response) == {"params"}


def test_previewing_another_teams_template_is_a_404(world):
    theirs = empty_save_template(world.other_team)
    assert world.admin("POST", f"templates/{theirs.pk}/preview", {}).status_code == 404


def test_previewing_needs_credentials(world):
    template = empty_save_template(world.team)
    assert world.anonymous("POST", f"templates/{template.pk}/preview", {}).status_code == 401
