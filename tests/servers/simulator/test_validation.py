"""validate_prompt: ComfyUI's 400 bodies, straight from the function."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from servers.simulator.config import SimulatorConfig
from servers.simulator.validation import validate_prompt


def _validate(prompt: Any, tmp_path: pathlib.Path, **config: Any):
    return validate_prompt(prompt, SimulatorConfig(**config), tmp_path)


def _empty(**inputs: Any) -> dict[str, Any]:
    values = {"width": 64, "height": 64, "batch_size": 1, "color": 0, **inputs}
    return {"class_type": "EmptyImage", "inputs": values}


def _save(source: str = "1") -> dict[str, Any]:
    return {"class_type": "SaveImage", "inputs": {"images": [source, 0], "filename_prefix": "x"}}


def test_valid_prompt_lists_its_outputs(tmp_path: pathlib.Path) -> None:
    result = _validate({"1": _empty(), "2": _save()}, tmp_path)
    assert result.ok
    assert result.outputs == ["2"]
    assert result.node_errors == {}


def test_missing_required_input_is_reported_on_the_node_not_the_output(
    tmp_path: pathlib.Path,
) -> None:
    prompt = {
        "1": _empty(),
        "2": {"class_type": "ImageInvert", "inputs": {}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}},
    }
    result = _validate(prompt, tmp_path)
    assert not result.ok
    assert result.error == {
        "type": "prompt_outputs_failed_validation",
        "message": "Prompt outputs failed validation",
        "details": "",
        "extra_info": {},
    }
    assert result.node_errors == {
        "2": {
            "errors": [
                {
                    "type": "required_input_missing",
                    "message": "Required input is missing",
                    "details": "image",
                    "extra_info": {"input_name": "image"},
                }
            ],
            "dependent_outputs": ["3"],
            "class_type": "ImageInvert",
        }
    }


def test_value_below_min_carries_the_input_config(tmp_path: pathlib.Path) -> None:
    result = _validate({"1": _empty(width=0), "2": _save()}, tmp_path)
    error = result.node_errors["1"]["errors"][0]
    assert error["type"] == "value_smaller_than_min"
    assert error["message"] == "Value 0 smaller than min of 1"
    assert error["extra_info"] == {
        "input_name": "width",
        "input_config": ["INT", {"default": 512, "min": 1, "max": 16384, "step": 1}],
        "received_value": 0,
    }


def test_value_above_max_is_value_bigger_than_max(tmp_path: pathlib.Path) -> None:
    result = _validate({"1": _empty(height=20000), "2": _save()}, tmp_path)
    error = result.node_errors["1"]["errors"][0]
    assert (error["type"], error["message"]) == (
        "value_bigger_than_max",
        "Value 20000 bigger than max of 16384",
    )


def test_unconvertible_value_is_invalid_input_type(tmp_path: pathlib.Path) -> None:
    result = _validate({"1": _empty(width="wide"), "2": _save()}, tmp_path)
    error = result.node_errors["1"]["errors"][0]
    assert error["type"] == "invalid_input_type"
    assert error["details"] == "width, wide, invalid literal for int() with base 10: 'wide'"


def test_combo_value_not_in_short_list_lists_the_choices(tmp_path: pathlib.Path) -> None:
    scale = {
        "class_type": "ImageScale",
        "inputs": {
            "image": ["1", 0],
            "upscale_method": "magic",
            "width": 8,
            "height": 8,
            "crop": "disabled",
        },
    }
    result = _validate({"1": _empty(), "2": scale, "3": _save("2")}, tmp_path)
    assert result.node_errors["2"]["errors"][0]["details"] == (
        "upscale_method: 'magic' not in ['nearest-exact', 'bilinear', 'area', 'bicubic', 'lanczos']"
    )


def test_unknown_checkpoint_is_value_not_in_list_of_this_servers_models(
    tmp_path: pathlib.Path,
) -> None:
    loader = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "other.ckpt"}}
    models = {"checkpoints": ["mine.safetensors"]}
    prompt = {
        "1": loader,
        "2": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "x"}},
        "3": {"class_type": "VAEDecode", "inputs": {"samples": ["4", 0], "vae": ["1", 2]}},
        "4": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1},
        },
    }
    result = _validate(prompt, tmp_path, models=models)
    assert result.node_errors["1"]["errors"][0]["details"] == (
        "ckpt_name: 'other.ckpt' not in ['mine.safetensors']"
    )
    loader["inputs"]["ckpt_name"] = "mine.safetensors"
    assert _validate(prompt, tmp_path, models=models).ok


def test_link_to_a_missing_node_is_an_exception_during_validation(
    tmp_path: pathlib.Path,
) -> None:
    result = _validate({"1": _empty(), "2": _save("9")}, tmp_path)
    assert result.error["details"] == "Exception when validating node: '9'"
    error = result.node_errors["2"]["errors"][0]
    assert error["type"] == "exception_during_validation"
    assert error["extra_info"]["exception_type"] == "KeyError"


def test_one_bad_output_of_two_is_dropped_and_reported_with_200(tmp_path: pathlib.Path) -> None:
    prompt = {
        "1": _empty(),
        "2": _save("9"),
        "3": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}},
    }
    result = _validate(prompt, tmp_path)
    assert result.ok
    assert result.outputs == ["4"]
    assert list(result.node_errors) == ["2"]


def test_linking_the_wrong_type_is_return_type_mismatch(tmp_path: pathlib.Path) -> None:
    latent = {
        "class_type": "EmptyLatentImage",
        "inputs": {"width": 64, "height": 64, "batch_size": 1},
    }
    result = _validate({"1": latent, "2": _save()}, tmp_path)
    assert result.node_errors["2"]["errors"][0]["type"] == "return_type_mismatch"


def test_load_image_of_a_missing_file_fails_custom_validation(tmp_path: pathlib.Path) -> None:
    load = {"class_type": "LoadImage", "inputs": {"image": "nope.png"}}
    result = _validate({"1": load, "2": _save()}, tmp_path)
    assert result.node_errors["1"]["errors"][0] == {
        "type": "custom_validation_failed",
        "message": "Custom validation failed for node",
        "details": "image - Invalid image file: nope.png",
        "extra_info": {"input_name": "image"},
    }


@pytest.mark.parametrize(
    ("prompt", "kind", "message", "details"),
    [
        (
            {"1": {"inputs": {}}},
            "invalid_prompt",
            "Cannot execute because a node is missing the class_type property.",
            "Node ID '#1'",
        ),
        (
            {"1": _empty(), "2": {"class_type": "NoSuchNode", "inputs": {}}},
            "invalid_prompt",
            "Cannot execute because node NoSuchNode does not exist.",
            "Node ID '#2'",
        ),
        ({"1": _empty()}, "prompt_no_outputs", "Prompt has no outputs", ""),
    ],
)
def test_structural_errors_have_no_node_errors(
    tmp_path: pathlib.Path, prompt: dict[str, Any], kind: str, message: str, details: str
) -> None:
    result = _validate(prompt, tmp_path)
    assert result.error == {"type": kind, "message": message, "details": details, "extra_info": {}}
    assert result.node_errors == {}
