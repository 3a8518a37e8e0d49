"""The balancer's inputs: server snapshots, a graph's requirements, and the stored
state of a capable server that `fleet.snapshot()` reads into a snapshot."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from servers.balancer import ServerSnapshot
from servers.requirements import Requirements

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
# What a plain SD 1.5 server offers; a builder's default server can run anything `needs()` asks.
CATALOGUE = frozenset(
    {"CheckpointLoaderSimple", "CLIPTextEncode", "KSampler", "VAEDecode", "SaveImage", "FooNode"}
)
MODELS = {
    "checkpoints": frozenset({"v1-5.safetensors"}),
    "loras": frozenset({"detail.safetensors"}),
}

_ids = itertools.count(1000)


def snap(server_id: int | None = None, name: str | None = None, **fields: Any) -> ServerSnapshot:
    """A healthy, idle, capable server with fresh load data, unless told otherwise."""
    server_id = server_id if server_id is not None else next(_ids)
    defaults: dict[str, Any] = {
        "health": "healthy",
        "node_classes": CATALOGUE,
        "model_files": MODELS,
        "load_checked_at": NOW - timedelta(seconds=2),
    }
    return ServerSnapshot(id=server_id, name=name or f"gpu-{server_id}", **(defaults | fields))


def needs(
    *classes: str,
    models: Iterable[tuple[str, str]] = (),
    tags: Iterable[str] = (),
    key: str = "wf-portrait",
) -> Requirements:
    return Requirements(
        workflow_key=key,
        affinity_key=key,
        node_classes=frozenset(classes or {"KSampler", "SaveImage"}),
        model_files=frozenset(models),
        tags=frozenset(tags),
    )


def healthy_state(now: datetime, **overrides: Any) -> dict[str, Any]:
    """State of a server the monitor saw healthy and capable just now."""
    return {
        "health": "healthy",
        "last_checked_at": now,
        "load_checked_at": now,
        "node_classes": sorted(CATALOGUE),
        "model_files": {folder: sorted(files) for folder, files in MODELS.items()},
        "capabilities_at": now,
    } | overrides
