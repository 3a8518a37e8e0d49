"""Normalising recorded and simulated traffic so they can be compared exactly.

Ids, timestamps and machine facts differ by nature; everything else must be
equal: message types and order per client, field names, values such as node
ids, `number` counters, cached node lists, output file names, error bodies.
"""

from __future__ import annotations

import re
from typing import Any

from .replay import IdMap

_TEMP_NAME = re.compile(r"ComfyUI_temp_[a-z]{5}_")
_GENERATED_SID = re.compile(r"^[0-9a-f]{32}$")
# Values that differ between any two machines or runs: compared by type only.
_TYPE_ONLY = {
    "timestamp",
    "ram_total",
    "ram_free",
    "vram_total",
    "vram_free",
    "torch_vram_total",
    "torch_vram_free",
    "python_version",
    "argv",
    "traceback",
    "_bytes",
}
# Lists whose order the real server takes from a Python set.
_UNORDERED = {"executed", "current_outputs"}


class Normaliser:
    def __init__(self, ids: IdMap, side: str):
        self.tokens: dict[str, str] = {}
        pairs = ids.to_sim.items()
        for number, (cap, sim) in enumerate(sorted(pairs)):
            if cap != sim and not _TEMP_NAME.search(cap):
                self.tokens[cap if side == "cap" else sim] = f"<id{number}>"

    def __call__(self, value: Any, key: str | None = None) -> Any:
        if key in _TYPE_ONLY:
            return f"<{type(value).__name__}>"
        if key == "current_inputs" and isinstance(value, dict):
            return {k: [f"<{type(v).__name__}>" for v in vs] for k, vs in value.items()}
        if isinstance(value, dict):
            return {self(k): self(v, k) for k, v in value.items()}
        if isinstance(value, list):
            items = [self(v) for v in value]
            if key in _UNORDERED:
                items = sorted(items, key=repr)
            if _is_queue_item(value):
                items[4] = sorted(items[4], key=repr)
            return items
        if isinstance(value, str):
            if key == "sid" and _GENERATED_SID.match(value):
                return "<generated sid>"
            value = self.tokens.get(value, value)
            return _TEMP_NAME.sub("ComfyUI_temp_<random>_", value)
        return value


def _is_queue_item(value: list[Any]) -> bool:
    return (
        len(value) == 5
        and isinstance(value[1], str)
        and isinstance(value[2], dict)
        and isinstance(value[4], list)
    )


def ws_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """What of a WS record is compared: the text message, or the binary frame
    without its byte lengths (PNG encoders differ)."""
    if entry["frame"] == "text":
        return {"text": entry["msg"]}
    kept = ("event_type", "image_type", "image_magic_hex", "node_id", "text", "metadata")
    return {"binary": {k: entry[k] for k in kept if k in entry}}


def summarise_like(recorded: Any, simulated: Any) -> tuple[Any, Any, list[str]]:
    """Reduce a simulated body the way the capture tool reduced the recorded one.

    Returns (recorded, simulated, notes) with notes on accepted differences.
    """
    notes: list[str] = []
    if not isinstance(recorded, dict):
        return recorded, simulated, notes
    if "_magic_hex" in recorded and isinstance(simulated, dict):
        return (
            {"nonempty": recorded["_bytes"] > 0, "magic": recorded["_magic_hex"]},
            {"nonempty": simulated.get("_bytes", 0) > 0, "magic": simulated.get("_magic_hex")},
            notes,
        )
    if not isinstance(simulated, dict):
        return recorded, simulated, notes
    if "_node_count" in recorded:
        notes.append(
            f"object_info: {len(simulated)} nodes here, {recorded['_node_count']} on the peer "
            "(the simulator serves the nodes it implements)"
        )
        first = [k for k in recorded["_first_keys"] if k in simulated]
        rec = {"_first_keys": first}
        sim = {"_first_keys": [k for k in simulated if k in recorded["_first_keys"]]}
        for name, entry in recorded.items():
            if not name.startswith("_"):
                rec[name] = entry
                sim[name] = simulated.get(name)
        return rec, sim, notes
    if "_keys" in recorded and "_entry_keys" in recorded:
        sim = {
            "_keys": list(simulated),
            "_entry_keys": {k: list(v) for k, v in simulated.items()},
        }
        return recorded, sim, notes
    if "_count" in recorded and "_keys_in_order" in recorded:
        return recorded, {"_count": len(simulated), "_keys_in_order": list(simulated)}, notes
    if "_note" in recorded and "queue_running" in recorded:
        rec = {k: v for k, v in recorded.items() if k != "_note"}
        sim = {k: [item[:2] for item in v] for k, v in simulated.items()}
        return rec, sim, notes
    entries = list(recorded.values())
    if len(entries) == 1 and isinstance(entries[0], dict) and "prompt_number" in entries[0]:
        sim = {
            key: {
                "prompt_number": entry["prompt"][0],
                "outputs": entry["outputs"],
                "status_str": entry["status"]["status_str"],
            }
            for key, entry in simulated.items()
        }
        return recorded, sim, notes
    return recorded, simulated, notes


def first_difference(expected: Any, actual: Any, path: str = "") -> str | None:
    if type(expected) is not type(actual):
        return f"{path or '/'}: expected {expected!r} ({type(expected).__name__}), got {actual!r}"
    if isinstance(expected, dict):
        if list(expected) != list(actual) and set(expected) != set(actual):
            return f"{path or '/'}: keys {sorted(expected)} != {sorted(actual)}"
        for key in expected:
            found = first_difference(expected[key], actual[key], f"{path}/{key}")
            if found:
                return found
        return None
    if isinstance(expected, list):
        if len(expected) != len(actual):
            return f"{path or '/'}: {len(expected)} items expected, got {len(actual)}: {actual!r}"
        for index, (e, a) in enumerate(zip(expected, actual, strict=True)):
            found = first_difference(e, a, f"{path}[{index}]")
            if found:
                return found
        return None
    if expected != actual:
        return f"{path or '/'}: expected {expected!r}, got {actual!r}"
    return None


def describe_sequence(entries: list[dict[str, Any]]) -> list[str]:
    """Short per-message labels for failure messages: `progress 2/5`, `binary 4`."""
    out = []
    for entry in entries:
        if entry["frame"] != "text":
            out.append(f"binary {entry['event_type']}")
            continue
        message = entry["msg"]
        data = message.get("data", {})
        if message["type"] == "status":
            out.append(f"status {data['status']['exec_info']['queue_remaining']}")
        elif message["type"] == "progress":
            out.append(f"progress {data['value']}/{data['max']}")
        elif message["type"] == "executing":
            out.append(f"executing {data.get('node')}")
        else:
            out.append(message["type"])
    return out
