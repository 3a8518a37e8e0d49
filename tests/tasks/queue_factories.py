"""Builders for queue, dispatch and cancel tests: graphs, tasks, servers with state."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from servers.models import Server, ServerState
from tasks.models import Priority, Status, Task, TaskEvent, Team
from tests.factories import make_team, make_user

_seeds = itertools.count(1)
CATALOGUE = ["CheckpointLoaderSimple", "CLIPTextEncode", "KSampler", "VAEDecode", "SaveImage"]


def trivial_graph(seed: int | None = None) -> dict[str, Any]:
    """The smallest graph a simulator runs: an empty latent decoded and saved."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5.ckpt"}},
        "2": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1},
        },
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["1", 0],
                "seed": seed if seed is not None else next(_seeds),
                "steps": 1,
                "cfg": 1.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "positive": ["4", 0],
                "negative": ["4", 0],
                "latent_image": ["2", 0],
                "denoise": 1.0,
            },
        },
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["1", 1]}},
        "5": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["1", 2]}},
        "6": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "t"}},
    }


def make_task(
    team: Team | None = None,
    *,
    priority: int = Priority.NORMAL,
    status: str = Status.PENDING,
    created_at: datetime | None = None,
    **fields: Any,
) -> Task:
    team = team or make_team()
    task = Task.objects.create(
        team=team,
        graph=fields.pop("graph", None) or trivial_graph(),
        priority=priority,
        status=status,
        created_at=created_at or timezone.now(),
        **fields,
    )
    TaskEvent.objects.create(task=task, to_status=status, message="submitted")
    return task


def aged(minutes: float) -> datetime:
    return timezone.now() - timedelta(minutes=minutes)


def make_live_server(
    base_url: str, *, name: str | None = None, max_inflight: int = 2, **state: Any
) -> Server:
    """A registered, healthy server whose catalogue the monitor has just read."""
    now = timezone.now()
    server = Server.objects.create(
        name=name or base_url.rsplit(":", 1)[-1], base_url=base_url, max_inflight=max_inflight
    )
    ServerState.objects.filter(server=server).update(
        **(
            {
                "health": "healthy",
                "last_checked_at": now,
                "load_checked_at": now,
                "capabilities_at": None,  # unknown catalogue: the balancer assumes it can
            }
            | state
        )
    )
    return server


def member(team: Team):
    return make_user(team=team)
