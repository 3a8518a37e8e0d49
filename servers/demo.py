"""The demo fleet `serve --demo N` runs: simulated ComfyUI servers, registered.

The servers differ the way a real fleet does: speeds (so weights matter) and
checkpoint lists (so capability-aware balancing has something to decide).
"""

from __future__ import annotations

import sys
from pathlib import Path

from django.db import transaction

from servers.models import Server, ServerKind

SPEEDS = (1.0, 2.0, 0.5)
CHECKPOINTS = (
    ("v1-5-pruned-emaonly.safetensors", "sd_xl_base_1.0.safetensors"),
    ("v1-5-pruned-emaonly.safetensors",),
    ("sd_xl_base_1.0.safetensors", "sd_xl_refiner_1.0.safetensors"),
)
NAME = "sim-{}"


def simulator_argv(count: int, base_port: int, data_dir: Path) -> list[str]:
    speeds = ",".join(f"{speed:g}" for speed in SPEEDS)
    models = ";".join(",".join(names) for names in CHECKPOINTS)
    return [
        sys.executable, "-m", "servers.simulator",
        "--count", str(count),
        "--base-port", str(base_port),
        "--speed", speeds,
        "--models", models,
        "--data-dir", str(data_dir),
    ]  # fmt: skip


@transaction.atomic
def register(count: int, base_port: int, host: str = "127.0.0.1") -> list[Server]:
    """Create or re-point sim-1..sim-N; disable simulated servers beyond N."""
    servers = []
    for index in range(count):
        server, _ = Server.objects.update_or_create(
            name=NAME.format(index + 1),
            defaults={
                "base_url": f"http://{host}:{base_port + index}",
                "kind": ServerKind.SIMULATED,
                "enabled": True,
                "weight": SPEEDS[index % len(SPEEDS)],
                "is_primary": index == 0,
            },
        )
        servers.append(server)
    Server.objects.filter(kind=ServerKind.SIMULATED).exclude(pk__in=[s.pk for s in servers]).update(
        enabled=False
    )
    return servers
