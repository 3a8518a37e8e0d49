"""What kind of failure a task met, read from what ComfyUI said (issue 18 item 4).

Pure functions: no database, no network. `tasks.failures` decides what to do
with each class; this module only names it.

- `validation`: POST /prompt 400 for a bad value, link or type; an input image refused;
- `missing_model`: POST /prompt 400 because the server lacks a model file
  (`value_not_in_list` on a model input) or a node class;
- `out_of_memory`: `execution_error` whose exception is torch's OutOfMemoryError
  ("Allocation on device ..." / "out of memory");
- `node_error`: `execution_error` with any other exception a node raised;
- `server_lost`: the server crashed, restarted, stopped answering, or forgot the prompt;
- `interrupted`: `execution_interrupted`: a cancel we sent, or someone at the server.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from servers.comfyui import PromptRejected
from servers.comfyui.errors import ErrorDetail
from servers.requirements import CLASS_MODEL_INPUTS, MODEL_INPUTS, normalize_model_name


class ErrorClass(StrEnum):
    VALIDATION = "validation"
    MISSING_MODEL = "missing_model"
    OUT_OF_MEMORY = "out_of_memory"
    NODE_ERROR = "node_error"
    SERVER_LOST = "server_lost"
    INTERRUPTED = "interrupted"


# torch >= 2.5 raises torch.OutOfMemoryError (torch.cuda.OutOfMemoryError before);
# its text starts "Allocation on device" (CUDA) or says "out of memory" (others, MPS).
_OOM_TYPE = re.compile(r"OutOfMemory", re.IGNORECASE)
_OOM_TEXT = re.compile(r"allocation on device|out of memory", re.IGNORECASE)
# ComfyUI before 0.3.4x: "Cannot execute because node X does not exist."
_NO_SUCH_NODE = re.compile(r"Cannot execute because node (?P<name>.+?) does not exist")


def of_exception(exception_type: str, exception_message: str) -> ErrorClass:
    """The class of an `execution_error` (a node raised while running)."""
    if _OOM_TYPE.search(exception_type or "") or _OOM_TEXT.search(exception_message or ""):
        return ErrorClass.OUT_OF_MEMORY
    return ErrorClass.NODE_ERROR


@dataclass(frozen=True)
class Missing:
    """What a server lacks for a prompt it refused: model files and node classes."""

    models: tuple[tuple[str, str], ...] = ()  # (folder, file name)
    node_classes: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.models or self.node_classes)

    def names(self) -> list[str]:
        return [f"{folder}/{name}" for folder, name in self.models] + [
            f"node {name}" for name in self.node_classes
        ]


def of_rejection(error: PromptRejected) -> tuple[ErrorClass, Missing]:
    """The class of a POST /prompt 400, and what the server lacks if that is why.

    `missing_model` only when every complaint is a missing model or node: a bad
    value beside a missing model fails everywhere, so it is `validation`.
    """
    node_class = _missing_node_class(error.error)
    if node_class:
        return ErrorClass.MISSING_MODEL, Missing(node_classes=(node_class,))
    details = [(n.class_type, detail) for n in error.node_errors.values() for detail in n.errors]
    models = [_missing_model(class_type, detail) for class_type, detail in details]
    if details and all(models):
        return ErrorClass.MISSING_MODEL, Missing(models=_unique(m for m in models if m))
    return ErrorClass.VALIDATION, Missing()


def _missing_node_class(detail: ErrorDetail) -> str:
    if detail.type == "missing_node_type":  # ComfyUI 0.3.4x and later
        return str(detail.extra_info.get("class_type") or "")
    found = _NO_SUCH_NODE.search(detail.message or "")
    return found["name"] if found and detail.type == "invalid_prompt" else ""


def _missing_model(class_type: str, detail: ErrorDetail) -> tuple[str, str] | None:
    if detail.type != "value_not_in_list":
        return None
    name = detail.extra_info.get("input_name")
    value = detail.extra_info.get("received_value")
    if not isinstance(name, str) or not isinstance(value, str):
        return None
    folder = CLASS_MODEL_INPUTS.get((class_type, name)) or MODEL_INPUTS.get(name)
    return (folder, normalize_model_name(value)) if folder else None


def _unique(models: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple(dict.fromkeys(models))
