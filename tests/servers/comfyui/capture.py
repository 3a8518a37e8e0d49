"""The recorded real-ComfyUI traffic of ../shared/comfyui, as test data.

CI clones the repository with `shared/` beside it, so the path is relative to
the checkout, not to this machine.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

SHARED = Path(__file__).resolve().parents[3] / ".." / "shared" / "comfyui"
CAPTURE = SHARED / "protocol-capture.jsonl"
WORKFLOWS = SHARED / "workflows"


@cache
def records() -> tuple[dict[str, Any], ...]:
    with CAPTURE.open(encoding="utf-8") as fh:
        return tuple(json.loads(line) for line in fh if line.strip())


def text_messages() -> Iterator[dict[str, Any]]:
    """Every WS text message the server sent, as recorded."""
    for record in records():
        if record["kind"] == "ws" and record["frame"] == "text":
            yield record["msg"]


def binary_records() -> Iterator[dict[str, Any]]:
    for record in records():
        if record["kind"] == "ws" and record["frame"] == "binary":
            yield record


def http_records(method: str, path: str, *, prefix: bool = False) -> Iterator[dict[str, Any]]:
    """Recorded HTTP exchanges for `path` (query string ignored), or all under it."""
    for record in records():
        if record["kind"] != "http" or record["method"] != method:
            continue
        recorded = record["path"].split("?")[0]
        if recorded == path or (prefix and recorded.startswith(path)):
            yield record


def rebuild_binary_frame(record: dict[str, Any]) -> bytes:
    """The frame a binary record describes (the capture keeps its head and fields).

    Image bytes past the recorded magic are filler of the recorded length; the
    result is checked against the recorded head and total length.
    """
    kind = record["event_type"]
    if kind == 3:
        node = record["node_id"].encode()
        frame = struct.pack(">II", 3, len(node)) + node + record["text"].encode()
    else:
        image = bytes.fromhex(record["image_magic_hex"])
        image += b"\0" * (record["image_len"] - len(image))
        if kind == 1:
            frame = struct.pack(">II", 1, record["image_type"]) + image
        else:
            metadata = json.dumps(record["metadata"]).encode()
            frame = struct.pack(">II", 4, len(metadata)) + metadata + image
    assert frame[:16].hex() == record["head_hex"]
    assert len(frame) == record["len"]
    return frame


def workflow(name: str) -> dict[str, Any]:
    return json.loads((WORKFLOWS / f"{name}.json").read_text(encoding="utf-8"))


def object_info_sample() -> dict[str, Any]:
    return json.loads((SHARED / "object_info-sample.json").read_text(encoding="utf-8"))
