"""A deployment's worth of tasks for the list benchmarks, written with bulk_create.

What a team-based deployment holds after a few months: several teams of a few
users each, a fleet of servers, workflows with templates, and tasks spread over
90 days, most of them finished (completed with one to four outputs, some failed
or canceled), a queue of pending ones at the recent end and a few on servers.
Most tasks were submitted in batches, whose tasks share their `created_at`. Every
task carries a realistic SDXL graph (~3 KB of JSON) and its timeline events.

Not a benchmark itself: `bench_task_list.py` calls `build_world`.
"""

from __future__ import annotations

import copy
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

# Share of all tasks per team; the benchmark's member belongs to the first two.
TEAM_SHARES = (0.35, 0.25, 0.15, 0.10, 0.10, 0.05)
USERS_PER_TEAM = 5
SERVERS = 12
CHUNK = 4000  # tasks per bulk_create round (with their outputs and events)
PENDING_SHARE = 0.015  # the queue at the recent end
ON_SERVERS = 24  # 12 servers, 2 slots each: half running, half dispatched
FINISHED = (("completed", 0.90), ("failed", 0.06), ("canceled", 0.04))
PRIORITIES = ((1, 0.70), (0, 0.15), (2, 0.10), (3, 0.05))  # normal, low, high, urgent
PROMPTS = (
    "a lighthouse on a cliff at dusk, volumetric light, 35mm photo",
    "isometric cutaway of a cozy bakery, warm colors, highly detailed illustration",
    "portrait of an astronaut in a sunflower field, golden hour, bokeh",
    "product shot of a ceramic mug on marble, soft studio light",
    "a fox in the snow, watercolor, muted palette",
)


def sdxl_graph(prompt: str, seed: int, steps: int) -> dict[str, Any]:
    """An SDXL base text-to-image graph in API format, titles as the editor saves them."""

    def node(class_type: str, title: str, **inputs: Any) -> dict[str, Any]:
        return {"class_type": class_type, "inputs": inputs, "_meta": {"title": title}}

    return {
        "4": node(
            "CheckpointLoaderSimple", "Load Checkpoint", ckpt_name="sd_xl_base_1.0.safetensors"
        ),
        "5": node("EmptyLatentImage", "Empty Latent Image", width=1024, height=1024, batch_size=1),
        "6": node("CLIPTextEncode", "Positive prompt", text=prompt, clip=["4", 1]),
        "7": node(
            "CLIPTextEncode",
            "Negative prompt",
            text="blurry, low quality, watermark, text, deformed hands, extra fingers",
            clip=["4", 1],
        ),
        "10": node(
            "LoraLoader",
            "Style LoRA",
            lora_name="detail_tweaker_xl.safetensors",
            strength_model=0.6,
            strength_clip=0.6,
            model=["4", 0],
            clip=["4", 1],
        ),
        "3": node(
            "KSampler",
            "KSampler",
            seed=seed,
            steps=steps,
            cfg=7.0,
            sampler_name="dpmpp_2m",
            scheduler="karras",
            denoise=1.0,
            model=["10", 0],
            positive=["6", 0],
            negative=["7", 0],
            latent_image=["5", 0],
        ),
        "8": node("VAEDecode", "VAE Decode", samples=["3", 0], vae=["4", 2]),
        "11": node(
            "ImageScaleBy", "Upscale", upscale_method="lanczos", scale_by=1.5, image=["8", 0]
        ),
        "12": node(
            "ImageSharpen", "Sharpen", sharpen_radius=1, sigma=0.5, alpha=0.3, image=["11", 0]
        ),
        "9": node("SaveImage", "Save Image", filename_prefix="ComfyWeb", images=["12", 0]),
    }


@dataclass
class World:
    """What the benchmark needs back: the member it signs in as, and the sizes."""

    member: Any
    teams: list[Any]
    tasks: int
    outputs: int = 0
    events: int = 0
    counts: dict[str, int] = field(default_factory=dict)


def _pick(rng: random.Random, weighted: tuple[tuple[Any, float], ...]) -> Any:
    return rng.choices([v for v, _ in weighted], [w for _, w in weighted])[0]


def build_world(total: int, *, seed: int = 15) -> World:
    """`total` tasks and everything around them; returns the member to sign in as."""
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.utils import timezone

    from servers.models import Server
    from tasks.models import Batch, Task
    from teams.models import Membership, Role, Team
    from workflows.models import Template
    from workflows.store import create_workflow

    rng = random.Random(seed)
    User = get_user_model()
    teams, makers, sources = [], {}, {}
    for index, _ in enumerate(TEAM_SHARES):
        team = Team.objects.create(name=f"Team {index + 1}")
        teams.append(team)
        users = [
            User.objects.create_user(f"t{index + 1}-user{n}", password="x")  # noqa: S106
            for n in range(USERS_PER_TEAM)
        ]
        Membership.objects.bulk_create(
            Membership(team=team, user=u, role=Role.ADMIN if n == 0 else Role.MEMBER)
            for n, u in enumerate(users)
        )
        makers[team.pk] = users
        sources[team.pk] = []
        for w in range(3):
            workflow = create_workflow(
                team=team,
                name=f"SDXL {w + 1}",
                description="house style",
                tags=["sdxl"],
                graph=sdxl_graph(PROMPTS[w], 1, 30),
                user=users[0],
            )
            version = workflow.current_version
            template = Template.objects.create(
                team=team, name=f"Poster {w + 1}", workflow_version=version, created_by=users[0]
            )
            sources[team.pk].append((version, template))
    member = User.objects.create_user("bench-member", password="x")  # noqa: S106
    Membership.objects.bulk_create(
        Membership(team=team, user=member, role=Role.MEMBER) for team in teams[:2]
    )
    makers[teams[0].pk].append(member)
    servers = Server.objects.bulk_create(
        Server(name=f"gpu-{n + 1}", base_url=f"http://10.0.0.{n + 1}:8188") for n in range(SERVERS)
    )

    world = World(member=member, teams=teams, tasks=total)
    now = timezone.now()
    start = now - timedelta(days=90)
    pending = max(1, round(total * PENDING_SHARE))
    # Submissions oldest first, so ids grow with time as they do in a deployment.
    submissions = _submissions(rng, total)
    step = (now - start) / max(1, len(submissions))
    rows: list[tuple[Any, datetime, Any]] = []  # (team, created_at, batch or None) per task
    for n, (team_index, size) in enumerate(submissions):
        team = teams[team_index]
        created = start + step * n + timedelta(seconds=rng.random())
        batch = None
        if size > 1:
            submitter = rng.choice(makers[team.pk])
            batch = Batch(team=team, submitter=submitter, description=f"{size} runs")
        rows.extend([(team, created, batch)] * size)
    with transaction.atomic():
        Batch.objects.bulk_create({id(b): b for _, _, b in rows if b is not None}.values())
        for offset in range(0, total, CHUNK):
            tasks = [
                _task(
                    rng,
                    team,
                    created,
                    batch,
                    makers,
                    sources,
                    servers,
                    from_newest=total - 1 - (offset + i),
                    pending=pending,
                )
                for i, (team, created, batch) in enumerate(rows[offset : offset + CHUNK])
            ]
            Task.objects.bulk_create(tasks)
            world.outputs += _outputs(rng, tasks)
            world.events += _events(tasks)
            for task in tasks:
                world.counts[task.status] = world.counts.get(task.status, 0) + 1
    return world


def world_in_database() -> World:
    """The World of a database `build_world` filled earlier (copied with --from)."""
    from django.contrib.auth import get_user_model
    from django.db.models import Count

    from tasks.models import Output, Task, TaskEvent
    from teams.models import Team

    counts = dict(Task.objects.values_list("status").annotate(n=Count("pk")).order_by())
    return World(
        member=get_user_model().objects.get(username="bench-member"),
        teams=list(Team.objects.order_by("pk")),
        tasks=sum(counts.values()),
        outputs=Output.objects.count(),
        events=TaskEvent.objects.count(),
        counts=counts,
    )


def _submissions(rng: random.Random, total: int) -> list[tuple[int, int]]:
    """(team index, tasks in it) until `total`: a third single runs, the rest batches."""
    shares = tuple((i, s) for i, s in enumerate(TEAM_SHARES))
    out, left = [], total
    while left > 0:
        size = 1 if rng.random() < 0.55 else rng.choice((2, 4, 4, 8, 10, 16, 25, 50, 100))
        size = min(size, left)
        out.append((_pick(rng, shares), size))
        left -= size
    return out


def _task(rng, team, created, batch, makers, sources, servers, *, from_newest, pending):
    from tasks import work
    from tasks.models import Task

    version, template = rng.choice(sources[team.pk])
    raw = rng.random() < 0.1  # a graph posted to the API, no workflow
    prompt, seed, steps = rng.choice(PROMPTS), rng.randrange(2**32), rng.choice((20, 25, 30, 40))
    graph = sdxl_graph(prompt, seed, steps)
    task = Task(
        team=team,
        submitter=batch.submitter if batch else rng.choice(makers[team.pk]),
        workflow_version=None if raw else version,
        template=None if raw else template,
        params={} if raw else {"prompt": prompt, "seed": seed, "steps": steps},
        graph=graph,
        workflow_key=uuid.UUID(int=rng.getrandbits(128)).hex * 2,
        affinity_key=version.workflow_key if not raw else "",
        **work.fields_of(graph),  # as submitting keeps them
        priority=_pick(rng, PRIORITIES),
        batch=batch,
        created_at=created,
    )
    if from_newest < pending:
        task.status = "pending"
        return task
    server = rng.choice(servers)
    dispatched = created + timedelta(seconds=rng.uniform(0.2, 600))
    started = dispatched + timedelta(seconds=rng.uniform(0.05, 2))
    if from_newest < pending + ON_SERVERS:
        task.status = "running" if from_newest % 2 else "dispatched"
        _on_server(task, server, dispatched, started if task.status == "running" else None)
        task.slot_held = True
        if task.status == "running":
            task.progress_node, task.progress_node_type = "3", "KSampler"
            task.progress_value, task.progress_max, task.progress_nodes_done = 12, steps, 5
        return task
    task.status = _pick(rng, FINISHED)
    if task.status == "canceled" and rng.random() < 0.7:  # most never left the queue
        task.finished_at = created + timedelta(seconds=rng.uniform(1, 300))
        return task
    _on_server(task, server, dispatched, started)
    task.finished_at = started + timedelta(seconds=rng.uniform(4, 90))
    if task.status == "completed":
        task.progress_node, task.progress_node_type = "9", "SaveImage"
        task.progress_nodes_done, task.progress_fraction = len(graph), 1.0
    elif task.status == "failed":
        task.attempts = task.max_attempts
        task.progress_node, task.progress_node_type = "3", "KSampler"
        task.error_type, task.error_node = "OutOfMemoryError", "3"
        task.error_message = "Allocation on device 0 would exceed allowed memory. " * 3
    return task


def _on_server(task, server, dispatched, started) -> None:
    task.server, task.prompt_id, task.attempts = server, str(uuid.uuid4()), 1
    task.dispatched_at, task.started_at = dispatched, started


def _outputs(rng, tasks) -> int:
    from tasks.models import Output

    outputs = []
    for task in tasks:
        if task.status != "completed":
            continue
        for n in range(rng.choice((1, 1, 1, 1, 2, 4))):
            name = uuid.UUID(int=rng.getrandbits(128)).hex
            outputs.append(
                Output(
                    task=task,
                    team=task.team,
                    file=f"outputs/team-{task.team_id}/{name}.png",
                    thumbnail=f"thumbnails/team-{task.team_id}/{name}.webp",
                    original_name=f"ComfyWeb_{n:05}_.png",
                    content_type="image/png",
                    width=1536,
                    height=1536,
                    size=rng.randrange(1_500_000, 3_500_000),
                    node_id="9",
                    metadata={
                        "workflow_version": task.workflow_version_id,
                        "params": copy.deepcopy(task.params),
                        "seeds": {"3.seed": task.graph["3"]["inputs"]["seed"]},
                        "server": task.server.name,
                    },
                    created_at=task.finished_at,
                )
            )
    Output.objects.bulk_create(outputs)
    return len(outputs)


def _events(tasks) -> int:
    from tasks.models import TaskEvent

    events = []
    for task in tasks:
        steps = [("", "pending", "submitted", task.created_at)]
        if task.dispatched_at:
            steps.append(
                ("pending", "dispatched", f"sent to {task.server.name}", task.dispatched_at)
            )
        if task.started_at:
            steps.append(("dispatched", "running", "started", task.started_at))
        if task.finished_at:
            before = steps[-1][1]
            steps.append(
                (before, task.status, task.error_message[:80] or task.status, task.finished_at)
            )
        events.extend(
            TaskEvent(task=task, at=at, from_status=a, to_status=b, message=m, data={})
            for a, b, m, at in steps
        )
    TaskEvent.objects.bulk_create(events)
    return len(events)
