"""How a failure's words map to its class (`tasks.error_classes`), for the shapes
real ComfyUI versions send that the simulator does not."""

from __future__ import annotations

from servers.comfyui import PromptRejected
from servers.comfyui.errors import ErrorDetail, NodeErrors
from tasks.error_classes import ErrorClass, Missing, of_exception, of_rejection


def rejected(top: ErrorDetail, **nodes: tuple[str, list[ErrorDetail]]) -> PromptRejected:
    return PromptRejected(
        top,
        {
            nid: NodeErrors(nid, class_type, tuple(errors))
            for nid, (class_type, errors) in nodes.items()
        },
    )


FAILED_VALIDATION = ErrorDetail(
    "prompt_outputs_failed_validation", "Prompt outputs failed validation"
)


def not_in_list(name: str, value: str) -> ErrorDetail:
    return ErrorDetail(
        "value_not_in_list",
        "Value not in list",
        f"{name}: '{value}' not in []",
        {"input_name": name, "received_value": value},
    )


def test_torch_out_of_memory_errors_old_and_new_are_out_of_memory():
    assert of_exception("torch.OutOfMemoryError", "Allocation on device 0") == "out_of_memory"
    assert of_exception("torch.cuda.OutOfMemoryError", "CUDA out of memory.") == "out_of_memory"
    assert of_exception("RuntimeError", "MPS backend out of memory (MPS allocated: 9 GB)") == (
        ErrorClass.OUT_OF_MEMORY
    )


def test_any_other_exception_is_a_node_error():
    assert of_exception("RuntimeError", "boom") == ErrorClass.NODE_ERROR
    assert of_exception("", "") == ErrorClass.NODE_ERROR


def test_a_model_not_in_the_list_is_missing_model_with_its_folder():
    error = rejected(
        FAILED_VALIDATION,
        **{"4": ("LoraLoader", [not_in_list("lora_name", "sub\\style.safetensors")])},
    )
    assert of_rejection(error) == (
        ErrorClass.MISSING_MODEL,
        Missing(models=(("loras", "sub/style.safetensors"),)),
    )


def test_a_bad_value_beside_a_missing_model_is_validation():
    bad = ErrorDetail("value_smaller_than_min", "Value 0 smaller than min of 1", "steps")
    error = rejected(
        FAILED_VALIDATION,
        **{
            "1": ("CheckpointLoaderSimple", [not_in_list("ckpt_name", "x.safetensors")]),
            "3": ("KSampler", [bad]),
        },
    )
    assert of_rejection(error)[0] == ErrorClass.VALIDATION


def test_a_choice_not_in_the_list_that_names_no_model_is_validation():
    error = rejected(FAILED_VALIDATION, **{"3": ("KSampler", [not_in_list("sampler_name", "x")])})
    assert of_rejection(error)[0] == ErrorClass.VALIDATION


def test_missing_node_types_of_new_and_old_comfyui_are_missing_model():
    new = ErrorDetail(
        "missing_node_type",
        "Node 'Foo' not found. The custom node may not be installed.",
        extra_info={"class_type": "Foo"},
    )
    old = ErrorDetail("invalid_prompt", "Cannot execute because node Foo does not exist.")
    for top in (new, old):
        assert of_rejection(rejected(top)) == (
            ErrorClass.MISSING_MODEL,
            Missing(node_classes=("Foo",)),
        )
