from __future__ import annotations

import pytest

from tests.factories import shared_workflow, shared_workflow_names, simulator_catalogue
from workflows.validation import parse_graph_text, validate_graph

VALID = [n for n in shared_workflow_names() if not n.startswith("invalid_")]


@pytest.fixture(scope="module")
def catalogue():
    return simulator_catalogue()


@pytest.mark.parametrize("name", VALID)
def test_shared_valid_workflows_pass_structure_and_catalogue_checks(name, catalogue):
    graph = shared_workflow(name)
    assert validate_graph(graph).valid
    report = validate_graph(graph, catalogue, server_name="sim")
    assert report.valid, report.all_messages()


def test_workflow_without_output_node_is_rejected_even_without_a_catalogue():
    report = validate_graph(shared_workflow("invalid_no_outputs"))
    assert not report.valid
    assert report.types == {"prompt_no_outputs"}
    assert "at least one output node" in report.messages[0]


def test_unknown_class_is_reported_on_its_node_against_a_catalogue(catalogue):
    graph = shared_workflow("invalid_unknown_class")
    assert validate_graph(graph).valid  # structure alone cannot know the class
    report = validate_graph(graph, catalogue, server_name="gpu-1")
    assert list(report.node_errors) == ["2"]
    [error] = report.node_errors["2"]
    assert error["type"] == "invalid_prompt"
    assert "NoSuchNode does not exist on gpu-1" in error["message"]


def test_missing_required_input_names_the_input(catalogue):
    report = validate_graph(shared_workflow("invalid_missing_input"), catalogue)
    [error] = report.node_errors["2"]
    assert error["type"] == "required_input_missing"
    assert error["input_name"] == "image"


def test_value_below_minimum_is_value_smaller_than_min(catalogue):
    report = validate_graph(shared_workflow("invalid_value_out_of_range"), catalogue)
    [error] = report.node_errors["1"]
    assert error["type"] == "value_smaller_than_min"
    assert error["input_name"] == "width"
    assert "smaller than min of 1" in error["message"]


def test_value_above_maximum_and_not_in_list_and_wrong_type(catalogue):
    graph = shared_workflow("invert_blur_scale_save")
    graph["3"]["inputs"]["blur_radius"] = 99
    graph["4"]["inputs"]["upscale_method"] = "magic"
    graph["1"]["inputs"]["height"] = "tall"
    report = validate_graph(graph, catalogue)
    assert {e["type"] for e in report.node_errors["3"]} == {"value_bigger_than_max"}
    assert {e["type"] for e in report.node_errors["4"]} == {"value_not_in_list"}
    assert "'magic'" in report.node_errors["4"][0]["message"]
    assert {e["type"] for e in report.node_errors["1"]} == {"invalid_input_type"}


def test_as_json_has_the_api_shape(catalogue):
    data = validate_graph(shared_workflow("invalid_missing_input"), catalogue).as_json()
    assert set(data) == {"valid", "errors", "node_errors"}
    assert data["valid"] is False
    assert set(data["node_errors"]["2"][0]) == {"type", "message", "details", "input_name"}


def test_ui_format_export_is_refused_with_the_api_export_hint():
    ui = {
        "last_node_id": 3,
        "last_link_id": 2,
        "nodes": [{"id": 1, "type": "SaveImage"}],
        "links": [[1, 1, 0, 2, 0, "IMAGE"]],
        "version": 0.4,
    }
    report = validate_graph(ui)
    assert report.types == {"ui_format"}
    assert "Export (API)" in report.messages[0]
    assert "Dev mode" in report.messages[0]


def test_link_to_missing_node_is_reported():
    graph = shared_workflow("empty_save")
    graph["2"]["inputs"]["images"] = ["9", 0]
    report = validate_graph(graph)
    [error] = report.node_errors["2"]
    assert error["type"] == "exception_during_validation"
    assert "links to node 9, which is not in the workflow" in error["message"]


def test_link_to_missing_output_of_an_existing_node_is_reported_with_a_catalogue(catalogue):
    graph = shared_workflow("empty_save")
    graph["2"]["inputs"]["images"] = ["1", 3]
    assert validate_graph(graph).valid
    [error] = validate_graph(graph, catalogue).node_errors["2"]
    assert error["type"] == "bad_linked_input"
    assert "output 3 of node 1 (EmptyImage), which has 1 output" in error["message"]


def test_malformed_links_and_integer_node_ids_are_explained():
    graph = shared_workflow("empty_save")
    graph["2"]["inputs"]["images"] = ["1"]
    assert validate_graph(graph).node_errors["2"][0]["type"] == "bad_linked_input"
    graph["2"]["inputs"]["images"] = [1, 0]
    assert "as a string" in validate_graph(graph).node_errors["2"][0]["message"]


def test_link_with_wrong_type_is_return_type_mismatch(catalogue):
    graph = shared_workflow("load_invert_save")
    graph["2"]["inputs"]["image"] = ["1", 1]  # LoadImage's MASK into an IMAGE input
    [error] = validate_graph(graph, catalogue).node_errors["2"]
    assert error["type"] == "return_type_mismatch"


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ([], "not a list"),
        ({}, "no nodes"),
        ({"1": {"inputs": {}}}, "missing the class_type"),
        ({"1": {"class_type": "SaveImage"}}, '"inputs" object'),
        ({"1": "SaveImage"}, "must be an object"),
    ],
)
def test_structure_problems_have_precise_messages(data, fragment):
    report = validate_graph(data)
    assert not report.valid
    assert any(fragment in m for m in report.all_messages())


def test_bad_json_text_reports_line_and_column():
    data, report = parse_graph_text('{"1": {"class_type": "SaveImage",}}')
    assert data is None
    assert "line 1" in report.messages[0]


def test_output_node_from_catalogue_counts():
    graph = {"1": {"class_type": "MyCustomSaver", "inputs": {}}}
    assert not validate_graph(graph).valid
    catalogue = {"MyCustomSaver": {"input": {"required": {}}, "output": [], "output_node": True}}
    assert validate_graph(graph, catalogue).valid


def test_a_cycle_between_nodes_is_reported():
    graph = shared_workflow("invert_blur_scale_save")
    graph["2"]["inputs"]["image"] = ["4", 0]  # 2 <- 4 <- 3 <- 2
    report = validate_graph(graph)
    assert report.types == {"dependency_cycle"}
    assert "cycle" in report.all_messages()[0]


def test_new_style_combo_and_literal_for_a_link_only_input(catalogue):
    catalogue = dict(catalogue) | {
        "Picker": {
            "input": {"required": {"mode": ["COMBO", {"options": ["a", "b"]}], "image": ["IMAGE"]}},
            "output": ["IMAGE"],
            "output_node": True,
        }
    }
    graph = {"1": {"class_type": "Picker", "inputs": {"mode": "c", "image": "photo.png"}}}
    types = {e["input_name"]: e["type"] for e in validate_graph(graph, catalogue).node_errors["1"]}
    assert types == {"mode": "value_not_in_list", "image": "bad_linked_input"}
    graph["1"]["inputs"]["mode"] = "b"
    graph["1"]["inputs"]["image"] = ["1", 0]
    assert validate_graph(graph, catalogue).types == {"dependency_cycle"}


def test_a_seed_beyond_2_64_minus_1_is_refused_without_a_catalogue():
    graph = shared_workflow("slow_progress")
    graph["2"]["inputs"]["nonce"] = 2**64
    report = validate_graph(graph)
    [error] = report.node_errors["2"]
    assert (error["type"], error["input_name"]) == ("value_bigger_than_max", "nonce")
    assert str(2**64 - 1) in error["message"]
    graph["2"]["inputs"]["nonce"] = 2**64 - 1
    assert validate_graph(graph).valid


def test_a_number_too_long_to_read_is_reported_not_raised():
    data, report = parse_graph_text(
        '{"1": {"class_type": "X", "inputs": {"seed": ' + "9" * 5000 + "}}}"
    )
    assert data is None
    assert report.types == {"invalid_json"}
    assert "4300 digits" in report.messages[0]
