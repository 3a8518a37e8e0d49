"""The node catalogue: what /object_info serves and validation checks against.

The entries are the real `/object_info` entries recorded from ComfyUI 0.3.64
(object_info.json beside this module, copied from the shared capture so the
package works without it). Combos that list files are filled per server: model
names from the config, LoadImage from the input directory, as ComfyUI does.
"""

from __future__ import annotations

import copy
import json
import pathlib
from functools import cache
from typing import Any

from servers.simulator.config import SimulatorConfig

_DATA = pathlib.Path(__file__).with_name("object_info.json")

# Which model folder fills which combo input.
_MODEL_COMBOS: dict[tuple[str, str], str] = {
    ("CheckpointLoaderSimple", "ckpt_name"): "checkpoints",
}
_IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp"}


@cache
def _recorded() -> dict[str, dict[str, Any]]:
    with _DATA.open(encoding="utf-8") as handle:
        return json.load(handle)


def class_names() -> list[str]:
    return list(_recorded())


def has_class(class_type: object) -> bool:
    return isinstance(class_type, str) and class_type in _recorded()


def is_output_node(class_type: str) -> bool:
    return bool(_recorded()[class_type]["output_node"])


def return_types(class_type: str) -> list[str]:
    return list(_recorded()[class_type]["output"])


def input_files(input_dir: pathlib.Path) -> list[str]:
    if not input_dir.is_dir():
        return []
    return sorted(
        p.name for p in input_dir.iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_EXTENSIONS
    )


def node_info(class_type: str, config: SimulatorConfig, input_dir: pathlib.Path) -> dict[str, Any]:
    """One /object_info entry with this server's file lists filled in."""
    info = copy.deepcopy(_recorded()[class_type])
    required = info["input"].get("required", {})
    for (cls, name), folder in _MODEL_COMBOS.items():
        if cls == class_type and name in required:
            required[name][0] = config.model_list(folder)
    if class_type == "LoadImage":
        required["image"][0] = input_files(input_dir)
    return info


def object_info(config: SimulatorConfig, input_dir: pathlib.Path) -> dict[str, dict[str, Any]]:
    return {name: node_info(name, config, input_dir) for name in _recorded()}


def input_spec(
    class_type: str, config: SimulatorConfig, input_dir: pathlib.Path
) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """(required, optional) input specs, each `{name: [TYPE or choices, opts?]}`.

    Read-only views of the recorded entry: validation runs on every POST
    /prompt, so only the file-list combos are rebuilt, nothing is deep-copied.
    """
    recorded = _recorded()[class_type]["input"]
    required = dict(recorded.get("required", {}))
    for (cls, name), folder in _MODEL_COMBOS.items():
        if cls == class_type and name in required:
            required[name] = [config.model_list(folder), *required[name][1:]]
    if class_type == "LoadImage":
        # LoadImage checks its file itself (custom validation), not the combo.
        required["image"] = [[], *required["image"][1:]]
    return required, recorded.get("optional", {})
