"""The recorded ComfyUI traffic (../shared/comfyui/protocol-capture.jsonl).

CI clones the repository with shared/ beside it; the tests that need the
capture skip with a reason when it is not there.
"""

from __future__ import annotations

import json
import pathlib
import struct
from dataclasses import dataclass, field
from functools import cache
from typing import Any

SHARED = pathlib.Path(__file__).resolve().parents[3] / ".." / "shared" / "comfyui"
CAPTURE = SHARED / "protocol-capture.jsonl"
WORKFLOWS = SHARED / "workflows"


def available() -> bool:
    return CAPTURE.is_file()


@dataclass
class Scenario:
    name: str
    note: str
    t: float
    records: list[dict[str, Any]] = field(default_factory=list)

    def ws(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["kind"] == "ws"]

    def http(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["kind"] == "http"]


@cache
def records() -> list[dict[str, Any]]:
    with CAPTURE.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


@cache
def scenarios() -> dict[str, Scenario]:
    out: dict[str, Scenario] = {}
    for record in records():
        if record["kind"] == "scenario":
            out[record["scenario"]] = Scenario(record["scenario"], record["note"], record["t"])
        else:
            out[record["scenario"]].records.append(record)
    return out


def scenario_names() -> list[str]:
    if not available():
        return []
    return list(scenarios())


def workflow(name: str) -> dict[str, Any]:
    return json.loads((WORKFLOWS / f"{name}.json").read_text(encoding="utf-8"))


def describe_binary(frame: bytes) -> dict[str, Any]:
    """A binary frame in the capture's terms (event_type, image_type, metadata, ...)."""
    out: dict[str, Any] = {"len": len(frame), "head_hex": frame[:16].hex()}
    (event,) = struct.unpack(">I", frame[:4])
    out["event_type"] = event
    if event == 1:
        (image_type,) = struct.unpack(">I", frame[4:8])
        out.update(
            image_type=image_type, image_magic_hex=frame[8:16].hex(), image_len=len(frame) - 8
        )
    elif event == 3:
        (length,) = struct.unpack(">I", frame[4:8])
        out.update(node_id=frame[8 : 8 + length].decode(), text=frame[8 + length :].decode())
    elif event == 4:
        (length,) = struct.unpack(">I", frame[4:8])
        image = frame[8 + length :]
        out.update(
            metadata=json.loads(frame[8 : 8 + length]),
            image_magic_hex=image[:8].hex(),
            image_len=len(image),
        )
    return out
