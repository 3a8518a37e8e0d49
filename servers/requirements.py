"""What a task needs from a server, read off its API-format graph.

The node classes it uses, the model files its loaders name (by ComfyUI model
folder), a workflow key that stays the same across a seed sweep (graphs of one
key differ only in seeds, so a server's verdict on one holds for all), and an
affinity key: what stays loaded on a server between prompts — the model files
and the workflow version — so the balancer keeps runs of one template on the
server that has their models in VRAM whatever their prompt text or steps.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# ServerState.last_affinity_key and BalancerDecision.workflow_key hold 64 characters.
MAX_WORKFLOW_KEY = 64
# Inputs that change on every run of a seed sweep without changing which models
# it loads; leaving them out of the workflow key keeps the sweep on one server.
# The one list of seed-like input names: templates re-seed them, outputs record them.
SEED_INPUTS = frozenset({"seed", "noise_seed", "nonce"})
# ComfyUI's seed inputs take 0 … 0xffffffffffffffff (torch's generator is 64-bit);
# a larger seed is refused by the server only when the prompt is sent.
SEED_MAX = 2**64 - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Requirements:
    """What a task needs from a server; see `requirements_from_graph()`."""

    workflow_key: str = ""
    affinity_key: str = ""  # "" (no affinity) when the graph loads no model file
    node_classes: frozenset[str] = frozenset()
    model_files: frozenset[tuple[str, str]] = frozenset()  # (folder, file name)
    tags: frozenset[str] = frozenset()
    # Server id -> why its node catalogue rejects the graph's inputs. Judged
    # outside the balancer (`workflows.runnable`), which has no graph validation.
    refused_by: Mapping[int, str] = field(default_factory=dict, compare=False, hash=False)
    # Server id -> predicted seconds to run it there (`servers.speed`); empty: rank by load.
    seconds: Mapping[int, float] = field(default_factory=dict, compare=False, hash=False)


# Loader inputs that name a model file, by input name, and the ComfyUI model
# folder (GET /models/{folder}) the file must be in. Embeddings are left out:
# they are named inside prompt text and a missing one only warns.
MODEL_INPUTS: Mapping[str, str] = {
    "ckpt_name": "checkpoints",
    "config_name": "configs",
    "lora_name": "loras",
    "vae_name": "vae",
    "clip_name": "text_encoders",
    "clip_name1": "text_encoders",
    "clip_name2": "text_encoders",
    "clip_name3": "text_encoders",
    "clip_name4": "text_encoders",
    "unet_name": "diffusion_models",
    "control_net_name": "controlnet",
    "upscale_model": "upscale_models",
    "style_model_name": "style_models",
    "gligen_name": "gligen",
    "hypernetwork_name": "hypernetworks",
    "photomaker_model_name": "photomaker",
}
# Where one node class uses an input name differently.
CLASS_MODEL_INPUTS: Mapping[tuple[str, str], str] = {
    ("UpscaleModelLoader", "model_name"): "upscale_models",
    ("CLIPVisionLoader", "clip_name"): "clip_vision",
}
# VAELoader offers these built from vae_approx files; they are no file in vae/.
_VIRTUAL_VAES = frozenset({"taesd", "taesdxl", "taesd3", "taef1", "pixel_space"})
# Custom nodes use "None" for "no file"; core loaders never list it.
_NO_FILE = frozenset({"", "None"})
# Older ComfyUI names two folders differently; either name holds the same files.
FOLDER_ALIASES: Mapping[str, str] = {"clip": "text_encoders", "unet": "diffusion_models"}
_FOLDER_NAMES: Mapping[str, tuple[str, ...]] = {
    "text_encoders": ("text_encoders", "clip"),
    "diffusion_models": ("diffusion_models", "unet"),
}


def canonical_folder(folder: str) -> str:
    return FOLDER_ALIASES.get(folder, folder)


def normalize_model_name(name: str) -> str:
    # Windows servers list sub-folders with backslashes (SDXL\\base.safetensors).
    return name.replace("\\", "/")


def model_index(model_files: Mapping[str, Iterable[str]]) -> dict[str, frozenset[str]]:
    """A server's raw model lists, with folder aliases merged and names normalised."""
    index: dict[str, set[str]] = {}
    for folder, names in model_files.items():
        index.setdefault(canonical_folder(folder), set()).update(
            normalize_model_name(n) for n in names if isinstance(n, str)
        )
    return {folder: frozenset(names) for folder, names in index.items()}


def has_model(model_files: Mapping[str, frozenset[str]], folder: str, name: str) -> bool:
    return any(name in model_files.get(f, ()) for f in _FOLDER_NAMES.get(folder, (folder,)))


def requirements_from_graph(
    graph: Mapping[str, Any],
    *,
    workflow_key: str | None = None,
    affinity_key: str = "",
    tags: Iterable[str] = (),
) -> Requirements:
    """What a ComfyUI API-format graph (`{node_id: {class_type, inputs}}`) needs."""
    key = workflow_key if workflow_key is not None else workflow_key_of(graph)
    if len(key) > MAX_WORKFLOW_KEY:
        raise ValueError(f"workflow_key is {len(key)} characters; at most {MAX_WORKFLOW_KEY}")
    classes: set[str] = set()
    models: set[tuple[str, str]] = set()
    for node in graph.values():
        if not isinstance(node, Mapping) or not isinstance(node.get("class_type"), str):
            continue
        class_type = node["class_type"]
        classes.add(class_type)
        inputs = node.get("inputs")
        if isinstance(inputs, Mapping):
            models.update(_model_files(class_type, inputs))
    return Requirements(
        workflow_key=key,
        affinity_key=affinity_key,
        node_classes=frozenset(classes),
        model_files=frozenset(models),
        tags=frozenset(tags),
    )


def _model_files(class_type: str, inputs: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    for name, value in inputs.items():
        # Links are [node_id, output_index]; only literal strings name files.
        if not isinstance(value, str) or value in _NO_FILE:
            continue
        folder = CLASS_MODEL_INPUTS.get((class_type, name)) or MODEL_INPUTS.get(name)
        if folder is None or (folder == "vae" and value in _VIRTUAL_VAES):
            continue
        yield folder, normalize_model_name(value)


def workflow_key_of(graph: Mapping[str, Any]) -> str:
    """sha256[:16] of the graph's canonical JSON, seed-like inputs and titles left out.

    Two runs of a seed sweep share a key, so affinity keeps them on the server
    that has their models loaded.
    """
    canonical = {str(node_id): _without_seeds(node) for node_id, node in graph.items()}
    text = json.dumps(
        canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def affinity_key_of(graph: Mapping[str, Any], workflow_version_id: int | None) -> str:
    """sha256[:16] of the model files the graph loads and its workflow version; ""
    when it loads none (nothing stays in VRAM worth going back for)."""
    models = sorted(requirements_from_graph(graph, workflow_key="").model_files)
    if not models:
        return ""
    text = json.dumps({"version": workflow_version_id, "models": models}, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _without_seeds(node: Any) -> Any:
    if not isinstance(node, Mapping):
        return node
    inputs = node.get("inputs")
    if isinstance(inputs, Mapping):
        inputs = {k: v for k, v in inputs.items() if k not in SEED_INPUTS}
    # `_meta` (the UI title) changes nothing a server does.
    return {"class_type": node.get("class_type"), "inputs": inputs}
