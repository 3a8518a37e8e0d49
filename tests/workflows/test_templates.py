from __future__ import annotations

import pytest

from tests.factories import (
    empty_save_template,
    make_team,
    make_template,
    make_workflow,
    shared_workflow,
    simulator_catalogue,
)
from workflows.models import ParameterType, TemplateParameter
from workflows.templating import (
    SeedSweep,
    ValueList,
    clean_value,
    clean_values,
    expand_runs,
    graph_diff,
    render,
    render_graph,
    suggest_parameters,
)

pytestmark = pytest.mark.django_db

TXT2IMG = {
    "3": {
        "class_type": "KSampler",
        "inputs": {
            "seed": 42,
            "steps": 20,
            "cfg": 7.5,
            "sampler_name": "euler",
            "scheduler": "normal",
            "denoise": 1.0,
            "model": ["4", 0],
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": ["5", 0],
        },
    },
    "4": {
        "class_type": "CheckpointLoaderSimple",
        "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"},
    },
    "5": {
        "class_type": "EmptyLatentImage",
        "inputs": {"width": 512, "height": 512, "batch_size": 1},
    },
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "cw"}},
}


@pytest.fixture
def template():
    return empty_save_template(make_team())


def test_render_sets_inputs_on_a_deep_copy(template):
    graph = render(template, {"width": 300, "color": 255, "prefix": "x"})
    assert graph["1"]["inputs"]["width"] == 300
    assert graph["2"]["inputs"]["filename_prefix"] == "x"
    assert graph["2"]["inputs"]["images"] == ["1", 0]
    assert template.workflow_version.graph["1"]["inputs"]["width"] == 512


def test_clean_values_fills_defaults_and_reports_bounds_types_and_choices(template):
    values, errors = clean_values(template, {})
    assert values == {"width": 512, "color": 0, "prefix": "comfyweb_empty"}
    assert errors == {}
    _, errors = clean_values(template, {"width": "4096", "color": "7", "prefix": "p"})
    assert errors["width"] == "At most 2048."
    assert "not one of the choices" in errors["color"]
    _, errors = clean_values(template, {"width": "wide"})
    assert errors["width"] == "Enter a whole number."
    values, errors = clean_values(template, {"width": "0"})
    assert errors["width"] == "At least 1."


def test_choice_values_keep_their_json_type(template):
    values, _ = clean_values(template, {"color": "255"})
    assert values["color"] == 255


def test_plain_workflow_run_n_times_gets_fresh_seeds_per_run():
    graph = shared_workflow("slow_progress")
    runs = expand_runs(graph=graph, count=5)
    nonces = {run.graph["2"]["inputs"]["nonce"] for run in runs}
    assert len(runs) == 5
    assert len(nonces) == 5
    assert graph["2"]["inputs"]["nonce"] == 0
    [single] = expand_runs(graph=graph, count=1)
    assert single.graph == graph


def test_seed_sweep_gives_consecutive_seeds_on_the_chosen_parameter():
    version = make_workflow(make_team(), graph=TXT2IMG).current_version
    template = make_template(
        version,
        parameters=[
            {
                "name": "seed",
                "node_id": "3",
                "input_name": "seed",
                "type": ParameterType.SEED,
                "default": 1,
            },
        ],
    )
    runs = expand_runs(template=template, values={"seed": 1}, count=4, sweep=SeedSweep("seed", 100))
    assert [r.graph["3"]["inputs"]["seed"] for r in runs] == [100, 101, 102, 103]
    assert [r.params["seed"] for r in runs] == [100, 101, 102, 103]


def test_value_list_gives_one_run_per_value(template):
    runs = expand_runs(
        template=template,
        values={"width": 64, "color": 0, "prefix": "p"},
        value_list=ValueList("width", [64, 128, 256]),
    )
    assert [r.graph["1"]["inputs"]["width"] for r in runs] == [64, 128, 256]
    assert all(r.params["prefix"] == "p" for r in runs)


def test_template_count_without_seed_parameters_reseeds_the_graph():
    version = make_workflow(make_team(), graph=shared_workflow("slow_progress")).current_version
    template = make_template(
        version,
        parameters=[
            {
                "name": "steps",
                "node_id": "2",
                "input_name": "steps",
                "type": ParameterType.INT,
                "default": 5,
            },
        ],
    )
    runs = expand_runs(template=template, values={"steps": 3}, count=3)
    assert {r.graph["2"]["inputs"]["steps"] for r in runs} == {3}
    assert len({r.graph["2"]["inputs"]["nonce"] for r in runs}) == 3


def _nonce_template(param_type: str = ParameterType.INT):
    """slow_progress with its `nonce` (a seed-like input) bound to an int parameter."""
    version = make_workflow(make_team(), graph=shared_workflow("slow_progress")).current_version
    return make_template(
        version,
        parameters=[
            {"name": "nonce", "node_id": "2", "input_name": "nonce", "type": param_type},
            {"name": "steps", "node_id": "2", "input_name": "steps", "type": ParameterType.INT},
        ],
    )


def _seed_and_steps_template():
    version = make_workflow(make_team(), graph=TXT2IMG).current_version
    return make_template(
        version,
        parameters=[
            {"name": "seed", "node_id": "3", "input_name": "seed", "type": ParameterType.SEED},
            {"name": "steps", "node_id": "3", "input_name": "steps", "type": ParameterType.INT},
        ],
    )


def assert_params_are_what_runs(template, runs):
    """Rendering a run's recorded params on the version's graph gives exactly its graph."""
    for run in runs:
        assert render(template, run.params) == run.graph


def test_a_value_list_over_an_int_bound_to_a_seed_input_runs_the_listed_values():
    template = _nonce_template()
    runs = expand_runs(
        template=template,
        values={"nonce": 0, "steps": 2},
        value_list=ValueList("nonce", [314282915, 7, 8]),
    )
    assert [r.graph["2"]["inputs"]["nonce"] for r in runs] == [314282915, 7, 8]
    assert [r.params["nonce"] for r in runs] == [314282915, 7, 8]
    assert_params_are_what_runs(template, runs)


def test_run_n_times_never_reseeds_an_input_a_parameter_binds():
    template = _nonce_template()
    runs = expand_runs(template=template, values={"nonce": 5, "steps": 2}, count=3)
    assert [r.graph["2"]["inputs"]["nonce"] for r in runs] == [5, 5, 5]
    assert_params_are_what_runs(template, runs)


def test_a_value_list_changes_only_the_listed_parameter():
    template = _seed_and_steps_template()
    runs = expand_runs(
        template=template, values={"seed": 7, "steps": 20}, value_list=ValueList("steps", [1, 2])
    )
    assert [r.graph["3"]["inputs"]["seed"] for r in runs] == [7, 7]
    assert [r.params for r in runs] == [{"seed": 7, "steps": 1}, {"seed": 7, "steps": 2}]


def test_run_n_times_records_fresh_seeds_of_unbound_inputs_under_node_and_input():
    version = make_workflow(make_team(), graph=shared_workflow("slow_progress")).current_version
    template = make_template(
        version,
        parameters=[
            {"name": "steps", "node_id": "2", "input_name": "steps", "type": ParameterType.INT},
        ],
    )
    runs = expand_runs(template=template, values={"steps": 3}, count=3)
    assert [set(r.params) for r in runs] == [{"steps", "2.nonce"}] * 3
    assert [r.params["2.nonce"] for r in runs] == [r.graph["2"]["inputs"]["nonce"] for r in runs]
    assert len({r.params["2.nonce"] for r in runs}) == 3
    assert_params_are_what_runs(template, runs)


def test_run_n_times_records_fresh_values_of_seed_parameters():
    template = _seed_and_steps_template()
    runs = expand_runs(template=template, values={"seed": 7, "steps": 20}, count=3)
    assert len({r.params["seed"] for r in runs}) == 3
    assert_params_are_what_runs(template, runs)


def test_a_plain_graph_run_n_times_records_each_runs_seeds():
    graph = TXT2IMG | {"10": {"class_type": "KSampler", "inputs": {"seed": 1, "noise_seed": 2}}}
    runs = expand_runs(graph=graph, count=2)
    for run in runs:
        assert set(run.params) == {"3.seed", "10.seed", "10.noise_seed"}
        assert render_graph(graph, [], run.params) == run.graph


def test_a_pinned_seed_of_an_unbound_input_is_set_and_recorded():
    version = make_workflow(make_team(), graph=shared_workflow("slow_progress")).current_version
    template = make_template(version)
    values, errors = clean_values(template, {"2.nonce": "99"})
    assert errors == {}
    [run] = expand_runs(template=template, values=values)
    assert run.graph["2"]["inputs"]["nonce"] == 99
    assert run.params == {"2.nonce": 99}


def test_a_pinned_seed_must_name_an_unbound_seed_input():
    template = _nonce_template()
    values, _ = clean_values(template, {"nonce": 1, "steps": 1, "2.nonce": 5, "2.steps": 9})
    assert values == {"nonce": 1, "steps": 1}
    _, errors = clean_values(make_template(template.workflow_version), {"2.nonce": "x"})
    assert errors == {"2.nonce": "Enter a whole number."}


SEED_MAX = 2**64 - 1


@pytest.mark.parametrize("kind", [ParameterType.SEED, ParameterType.INT])
def test_a_seed_beyond_2_64_minus_1_is_refused_naming_the_bound(kind):
    param = TemplateParameter(type=kind, node_id="2", input_name="nonce")
    assert clean_value(param, str(SEED_MAX)) == SEED_MAX
    with pytest.raises(ValueError, match=f"at most 2\\*\\*64 - 1 \\({SEED_MAX}\\)"):
        clean_value(param, "99999999999999999999999999999")
    with pytest.raises(ValueError, match="0 or more"):
        clean_value(param, -1)


def test_a_sweep_running_past_2_64_minus_1_is_refused():
    template = _seed_and_steps_template()
    values = {"seed": 1, "steps": 1}
    runs = expand_runs(
        template=template, values=values, count=2, sweep=SeedSweep("seed", SEED_MAX - 1)
    )
    assert [r.params["seed"] for r in runs] == [SEED_MAX - 1, SEED_MAX]
    with pytest.raises(ValueError, match="2\\*\\*64 - 1"):
        expand_runs(
            template=template, values=values, count=3, sweep=SeedSweep("seed", SEED_MAX - 1)
        )


def test_expand_runs_refuses_bad_counts(template):
    with pytest.raises(ValueError, match="count"):
        expand_runs(template=template, values={}, count=0)


def test_graph_diff_lists_changed_inputs(template):
    rendered = render(template, {"width": 300})
    [change] = graph_diff(template.workflow_version.graph, rendered)
    assert change == {
        "node_id": "1",
        "class_type": "EmptyImage",
        "input_name": "width",
        "before": 512,
        "after": 300,
    }


def test_suggestions_from_a_txt2img_graph_cover_seed_steps_cfg_prompts_size_and_checkpoint():
    version = make_workflow(make_team(), graph=TXT2IMG).current_version
    catalogue = simulator_catalogue()
    found = {
        s.name: s
        for s in suggest_parameters(
            version, catalogue, models={"checkpoints": ["other.safetensors"]}
        )
    }
    assert found["seed"].type == ParameterType.SEED
    assert (found["steps"].type, found["steps"].minimum, found["steps"].maximum) == ("int", 1, 150)
    assert (found["cfg"].minimum, found["cfg"].maximum) == (0.0, 100.0)
    assert found["denoise"].maximum == 1.0
    assert found["width"].minimum == 16  # EmptyLatentImage's own minimum
    assert found["prompt"].label == "Prompt"
    assert found["prompt_7"].label == "Negative prompt"
    assert found["ckpt"].type == ParameterType.CHOICE
    assert "v1-5-pruned-emaonly.safetensors" in found["ckpt"].choices
    assert "euler" in found["sampler_name"].choices


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("slow_progress", {"seed", "steps"}),
        ("load_invert_save", {"image"}),
        (
            "invert_blur_scale_save",
            {"width", "height", "blur_radius", "sigma", "width_4", "height_4"},
        ),
        ("empty_save", {"width", "height", "batch_size"}),
    ],
)
def test_suggestions_from_the_shared_workflows(name, expected):
    version = make_workflow(make_team(), graph=shared_workflow(name)).current_version
    names = {s.name for s in suggest_parameters(version)}
    assert expected <= names


def test_suggestions_become_valid_parameters():
    version = make_workflow(make_team(), graph=TXT2IMG).current_version
    for suggestion in suggest_parameters(version):
        param = TemplateParameter(
            type=suggestion.type,
            minimum=suggestion.minimum,
            maximum=suggestion.maximum,
            choices=suggestion.choices,
        )
        assert clean_value(param, suggestion.default) == suggestion.default
