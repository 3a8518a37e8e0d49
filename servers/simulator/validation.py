"""Prompt validation with ComfyUI's exact error bodies (PROTOCOL.md §6).

This mirrors `execution.validate_prompt` of the recorded version, quirks
included: an output whose bad input is upstream reports no errors of its own
(so `error.details` is often ""), every node with errors lists the outputs
validated so far in `dependent_outputs`, and a link to a missing node is a
KeyError reported as `exception_during_validation`.
"""

from __future__ import annotations

import pathlib
import traceback
from dataclasses import dataclass, field
from typing import Any

from servers.simulator import catalogue
from servers.simulator.config import SimulatorConfig

# Inputs validated by a node's own VALIDATE_INPUTS instead of the combo list.
_CUSTOM_VALIDATED: dict[str, tuple[str, ...]] = {"LoadImage": ("image",)}


@dataclass
class ValidationResult:
    ok: bool
    error: dict[str, Any] | None = None
    outputs: list[str] = field(default_factory=list)
    node_errors: dict[str, Any] = field(default_factory=dict)


def _error(kind: str, message: str, details: str) -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": {}}


class _Validator:
    def __init__(self, prompt: dict[str, Any], config: SimulatorConfig, input_dir: pathlib.Path):
        self.prompt = prompt
        self.config = config
        self.input_dir = input_dir
        # node id -> (valid, reasons)
        self.validated: dict[str, tuple[bool, list[dict[str, Any]]]] = {}

    def validate_node(self, node_id: str) -> bool:
        if node_id in self.validated:
            return self.validated[node_id][0]
        node = self.prompt[node_id]
        class_type = node["class_type"]
        inputs = node.get("inputs", {})
        required, optional = catalogue.input_spec(class_type, self.config, self.input_dir)
        errors: list[dict[str, Any]] = []
        valid = True
        custom = _CUSTOM_VALIDATED.get(class_type, ())
        for name, spec in [*required.items(), *optional.items()]:
            input_type = spec[0]
            extra = spec[1] if len(spec) > 1 else {}
            info = [input_type, extra]
            if name not in inputs:
                if name in required:
                    errors.append(
                        {
                            "type": "required_input_missing",
                            "message": "Required input is missing",
                            "details": name,
                            "extra_info": {"input_name": name},
                        }
                    )
                continue
            value = inputs[name]
            if isinstance(value, list):
                if not self._validate_link(node_id, name, value, input_type, info, errors):
                    valid = False
                continue
            converted = self._convert(name, value, input_type, info, errors)
            if converted is _INVALID:
                continue
            inputs[name] = converted
            if name in custom:
                continue
            self._check_range(name, converted, extra, info, errors)
            self._check_combo(name, converted, input_type, info, errors)
        for name in custom:
            if name in inputs and not isinstance(inputs[name], list):
                self._custom_validate(class_type, name, inputs[name], errors)
        if errors:
            valid = False
        self.validated[node_id] = (valid, errors)
        return valid

    def _validate_link(
        self,
        node_id: str,
        name: str,
        value: list[Any],
        input_type: Any,
        info: list[Any],
        errors: list[dict[str, Any]],
    ) -> bool:
        if len(value) != 2:
            errors.append(
                {
                    "type": "bad_linked_input",
                    "message": "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                    "details": name,
                    "extra_info": {
                        "input_name": name,
                        "input_config": info,
                        "received_value": value,
                    },
                }
            )
            return True
        source_id, slot = value
        # A KeyError here propagates to the output being validated, exactly as
        # ComfyUI's `prompt[o_id]['class_type']` does.
        source_class = self.prompt[source_id]["class_type"]
        received = catalogue.return_types(source_class)[slot]
        if not _types_match(received, input_type):
            errors.append(
                {
                    "type": "return_type_mismatch",
                    "message": "Return type mismatch between linked nodes",
                    "details": (
                        f"{name}, received_type({received}) mismatch input_type({input_type})"
                    ),
                    "extra_info": {
                        "input_name": name,
                        "input_config": info,
                        "received_type": received,
                        "linked_node": value,
                    },
                }
            )
            return True
        try:
            return self.validate_node(source_id)
        except Exception as exc:
            self.validated[source_id] = (
                False,
                [
                    {
                        "type": "exception_during_inner_validation",
                        "message": "Exception when validating inner node",
                        "details": str(exc),
                        "extra_info": {
                            "input_name": name,
                            "input_config": info,
                            "exception_message": str(exc),
                            "exception_type": _type_name(exc),
                            "traceback": traceback.format_tb(exc.__traceback__),
                            "linked_node": value,
                        },
                    }
                ],
            )
            return False

    def _convert(
        self, name: str, value: Any, input_type: Any, info: list[Any], errors: list[dict[str, Any]]
    ) -> Any:
        converters = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}
        converter = converters.get(input_type) if isinstance(input_type, str) else None
        if converter is None:
            return value
        try:
            return converter(value)
        except Exception as exc:
            errors.append(
                {
                    "type": "invalid_input_type",
                    "message": f"Failed to convert an input value to a {input_type} value",
                    "details": f"{name}, {value}, {exc}",
                    "extra_info": {
                        "input_name": name,
                        "input_config": info,
                        "received_value": value,
                        "exception_message": str(exc),
                    },
                }
            )
            return _INVALID

    @staticmethod
    def _check_range(
        name: str, value: Any, extra: dict[str, Any], info: list[Any], errors: list[dict[str, Any]]
    ) -> None:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return
        if "min" in extra and value < extra["min"]:
            kind, message = (
                "value_smaller_than_min",
                f"Value {value} smaller than min of {extra['min']}",
            )
        elif "max" in extra and value > extra["max"]:
            kind, message = (
                "value_bigger_than_max",
                f"Value {value} bigger than max of {extra['max']}",
            )
        else:
            return
        errors.append(
            {
                "type": kind,
                "message": message,
                "details": name,
                "extra_info": {"input_name": name, "input_config": info, "received_value": value},
            }
        )

    @staticmethod
    def _check_combo(
        name: str, value: Any, input_type: Any, info: list[Any], errors: list[dict[str, Any]]
    ) -> None:
        if not isinstance(input_type, list) or value in input_type:
            return
        # ComfyUI leaves long lists (scanned model files) out of the reply.
        if len(input_type) > 20:
            list_info, config = f"(list of length {len(input_type)})", None
        else:
            list_info, config = str(input_type), info
        errors.append(
            {
                "type": "value_not_in_list",
                "message": "Value not in list",
                "details": f"{name}: '{value}' not in {list_info}",
                "extra_info": {"input_name": name, "input_config": config, "received_value": value},
            }
        )

    def _custom_validate(
        self, class_type: str, name: str, value: Any, errors: list[dict[str, Any]]
    ) -> None:
        if class_type == "LoadImage" and not _annotated_exists(self.input_dir, str(value)):
            errors.append(
                {
                    "type": "custom_validation_failed",
                    "message": "Custom validation failed for node",
                    "details": f"{name} - Invalid image file: {value}",
                    "extra_info": {"input_name": name},
                }
            )


class _Invalid:
    pass


_INVALID = _Invalid()


def _types_match(received: str, expected: Any) -> bool:
    if not isinstance(expected, str) or received == "*" or expected == "*":
        return True
    return set(received.split(",")) & set(expected.split(",")) != set()


def _type_name(exc: BaseException) -> str:
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def _annotated_exists(input_dir: pathlib.Path, name: str) -> bool:
    # LoadImage accepts "sub/name.png" and the "name.png [input]" annotation.
    for suffix in (" [input]", " [output]", " [temp]"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if not name or name.startswith("/") or ".." in name:
        return False
    return (input_dir / name).is_file()


def validate_prompt(
    prompt: Any,
    config: SimulatorConfig,
    input_dir: pathlib.Path,
    partial_targets: list[str] | None = None,
) -> ValidationResult:
    """Validate an API-format prompt. Mutates input values to their converted types."""
    if not isinstance(prompt, dict):
        raise TypeError("prompt must be an object")  # real ComfyUI answers 500 here too
    outputs: list[str] = []
    for node_id, node in prompt.items():
        if "class_type" not in node:
            message = "Cannot execute because a node is missing the class_type property."
            return ValidationResult(
                False, _error("invalid_prompt", message, f"Node ID '#{node_id}'")
            )
        class_type = node["class_type"]
        if not catalogue.has_class(class_type):
            message = f"Cannot execute because node {class_type} does not exist."
            return ValidationResult(
                False, _error("invalid_prompt", message, f"Node ID '#{node_id}'")
            )
        if catalogue.is_output_node(class_type) and (
            partial_targets is None or node_id in partial_targets
        ):
            outputs.append(node_id)
    if not outputs:
        return ValidationResult(False, _error("prompt_no_outputs", "Prompt has no outputs", ""))

    validator = _Validator(prompt, config, input_dir)
    good: list[str] = []
    output_errors: list[dict[str, Any]] = []
    node_errors: dict[str, Any] = {}
    for output_id in outputs:
        try:
            valid = validator.validate_node(output_id)
            reasons = validator.validated[output_id][1]
        except Exception as exc:
            valid = False
            reasons = [
                {
                    "type": "exception_during_validation",
                    "message": "Exception when validating node",
                    "details": str(exc),
                    "extra_info": {
                        "exception_type": _type_name(exc),
                        "traceback": traceback.format_tb(exc.__traceback__),
                    },
                }
            ]
            validator.validated[output_id] = (False, reasons)
        if valid:
            good.append(output_id)
        else:
            output_errors.extend(reasons)
            # ComfyUI's loop: every failed node seen so far gains this output.
            for node_id, (node_valid, node_reasons) in validator.validated.items():
                if node_valid or not node_reasons:
                    continue
                entry = node_errors.setdefault(
                    node_id,
                    {
                        "errors": node_reasons,
                        "dependent_outputs": [],
                        "class_type": prompt[node_id]["class_type"],
                    },
                )
                entry["dependent_outputs"].append(output_id)
    if not good:
        details = "\n".join(f"{e['message']}: {e['details']}" for e in output_errors)
        error = _error(
            "prompt_outputs_failed_validation", "Prompt outputs failed validation", details
        )
        return ValidationResult(False, error, [], node_errors)
    return ValidationResult(True, None, good, node_errors)
