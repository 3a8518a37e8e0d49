"""The node output cache, "last prompt only" like ComfyUI's default CacheSet.

A node's key is its input signature: class, inputs and, through links, the
signatures of everything upstream (plus the file hash for LoadImage, ComfyUI's
IS_CHANGED). When a prompt starts, entries whose key is not part of it are
dropped, so after any other prompt ran the same prompt executes from scratch.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
from dataclasses import dataclass
from typing import Any


@dataclass
class CacheEntry:
    outputs: tuple[Any, ...]
    # {"meta": {...}, "output": {...}} for nodes with UI output, else None.
    ui: dict[str, Any] | None


class OutputCache:
    def __init__(self) -> None:
        self._entries: dict[str, CacheEntry] = {}
        self._keys: dict[str, str] = {}

    def reset(self) -> None:
        self._entries.clear()
        self._keys.clear()

    def set_prompt(self, prompt: dict[str, Any], input_dir: pathlib.Path) -> None:
        self._keys = {}
        for node_id in prompt:
            self._signature(prompt, node_id, input_dir)
        wanted = set(self._keys.values())
        self._entries = {k: v for k, v in self._entries.items() if k in wanted}

    def get(self, node_id: str) -> CacheEntry | None:
        key = self._keys.get(node_id)
        return None if key is None else self._entries.get(key)

    def set(self, node_id: str, entry: CacheEntry) -> None:
        self._entries[self._keys[node_id]] = entry

    def _signature(self, prompt: dict[str, Any], node_id: str, input_dir: pathlib.Path) -> str:
        if node_id in self._keys:
            return self._keys[node_id]
        node = prompt[node_id]
        inputs = []
        for name in sorted(node.get("inputs", {})):
            value = node["inputs"][name]
            if isinstance(value, list) and len(value) == 2 and value[0] in prompt:
                value = ["link", self._signature(prompt, value[0], input_dir), value[1]]
            inputs.append([name, value])
        parts = [node["class_type"], _is_changed(node, input_dir), inputs]
        key = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
        self._keys[node_id] = key
        return key


def _is_changed(node: dict[str, Any], input_dir: pathlib.Path) -> str:
    if node["class_type"] != "LoadImage":
        return ""
    path = input_dir / str(node.get("inputs", {}).get("image", ""))
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return "missing"


class NodeObjects:
    """Per-node instance state, kept like ComfyUI's object cache.

    ComfyUI reuses a node's Python object while consecutive prompts contain
    the same (node id, class): PreviewImage draws its random temp prefix once
    per object, so the file counter continues (`…_00002_.png`) across prompts.
    """

    def __init__(self) -> None:
        self._states: dict[tuple[str, str], dict[str, Any]] = {}

    def set_prompt(self, prompt: dict[str, Any]) -> None:
        wanted = {(node_id, node["class_type"]) for node_id, node in prompt.items()}
        self._states = {k: v for k, v in self._states.items() if k in wanted}

    def state(self, node_id: str, class_type: str) -> dict[str, Any]:
        return self._states.setdefault((node_id, class_type), {})

    def reset(self) -> None:
        self._states.clear()
