"""Small WebSocket/HTTP helpers for the simulator tests (httpx + websockets)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import ClientConnection

# A guard against hangs, never a synchronisation.
GUARD = 20.0


async def next_message(ws: ClientConnection) -> dict[str, Any] | bytes:
    frame = await asyncio.wait_for(ws.recv(), GUARD)
    return frame if isinstance(frame, bytes) else json.loads(frame)


async def until(ws: ClientConnection, kind: str, **fields: Any) -> list[dict[str, Any] | bytes]:
    """Every frame up to and including the first text message of `kind` whose
    data contains `fields`."""
    seen: list[dict[str, Any] | bytes] = []
    while True:
        message = await next_message(ws)
        seen.append(message)
        if isinstance(message, dict) and message["type"] == kind:
            data = message["data"]
            if all(data.get(k) == v for k, v in fields.items()):
                return seen


async def run_to_completion(ws: ClientConnection, prompt_id: str) -> list[dict[str, Any] | bytes]:
    """Frames until this client's `executing {node: null}` for the prompt."""
    return await until(ws, "executing", node=None, prompt_id=prompt_id)


def types(frames: list[dict[str, Any] | bytes]) -> list[str]:
    return [
        f"binary {int.from_bytes(f[:4])}" if isinstance(f, bytes) else f["type"] for f in frames
    ]


def empty_image(width: int = 64, height: int = 64, color: int = 65280) -> dict[str, Any]:
    return {
        "class_type": "EmptyImage",
        "inputs": {"width": width, "height": height, "batch_size": 1, "color": color},
    }


def slow_prompt(steps: int, seconds_per_step: float = 0.1, nonce: int = 0) -> dict[str, Any]:
    return {
        "1": empty_image(),
        "2": {
            "class_type": "SlowProgress",
            "inputs": {
                "image": ["1", 0],
                "steps": steps,
                "seconds_per_step": seconds_per_step,
                "nonce": nonce,
            },
        },
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "t"}},
    }


def empty_save(width: int = 32, height: int = 32, color: int = 0) -> dict[str, Any]:
    return {
        "1": empty_image(width, height, color),
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "e"}},
    }
