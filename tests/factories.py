"""The test world's builders: users, teams, servers, workflows, templates, tasks.

Plain functions with keyword overrides, one of each. Every builder saves what it
builds and returns it; what it leaves out is what the model defaults to.
"""

from __future__ import annotations

import itertools
import json
import pathlib
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.utils import timezone

from servers.containers.models import Container, ContainerPool, DockerHost, HostStatus
from servers.models import Server, ServerState
from servers.requirements import affinity_key_of, workflow_key_of
from servers.simulator import catalogue as sim_catalogue
from servers.simulator.config import SimulatorConfig
from tasks import work
from tasks.models import Priority, Status, Task, TaskEvent
from teams.models import Membership, Role, Team
from workflows.models import ParameterType, Template, TemplateParameter, Workflow, WorkflowVersion

PASSWORD = "correct horse battery staple"
SHARED_WORKFLOWS = pathlib.Path("/work/shared/comfyui/workflows")
# Copies of the shared workflows, for machines without /work/shared.
WORKFLOW_COPIES = pathlib.Path(__file__).with_name("data")
# What a simulated ComfyUI offers: the nodes and the checkpoint `trivial_graph` needs.
CHECKPOINT = "v1-5-pruned-emaonly.safetensors"
CATALOGUE = [
    "CheckpointLoaderSimple",
    "CLIPTextEncode",
    "EmptyLatentImage",
    "KSampler",
    "LoadImage",
    "VAEDecode",
    "SaveImage",
]
# Nothing listens on the discard port of the loopback interface.
CLOSED_PORT_URL = "http://127.0.0.1:9"

_sequence = itertools.count(1)


# -- people ---------------------------------------------------------------------------


def make_team(name: str | None = None) -> Team:
    return Team.objects.create(name=name or f"Team {next(_sequence)}")


def make_user(
    username: str | None = None,
    *,
    team: Team | None = None,
    role: Role = Role.MEMBER,
    staff: bool = False,
    superuser: bool = False,
    active: bool = True,
):
    User = get_user_model()
    user = User.objects.create_user(
        username or f"user{next(_sequence)}",
        password=PASSWORD,
        is_staff=staff or superuser,
        is_superuser=superuser,
        is_active=active,
    )
    if team is not None:
        Membership.objects.create(team=team, user=user, role=role)
    return user


# -- servers --------------------------------------------------------------------------


def make_server(
    name: str | None = None,
    *,
    base_url: str = CLOSED_PORT_URL,
    state: dict[str, Any] | None = None,
    **fields: Any,
) -> Server:
    """A saved Server (its ServerState comes with it), the state updated with `state`.

    Nothing listens at the default URL, so code that calls the server fails fast.
    """
    server = Server.objects.create(
        name=name or f"gpu-{next(_sequence)}", base_url=base_url, **fields
    )
    if state:
        ServerState.objects.filter(server=server).update(**state)
    return server


def capable_state(now: datetime | None = None, **overrides: Any) -> dict[str, Any]:
    """The state of a server the monitor has just found healthy, with the simulator's
    catalogue and checkpoint: what dispatch needs to send it `trivial_graph()`."""
    now = now or timezone.now()
    return {
        "health": "healthy",
        "last_checked_at": now,
        "load_checked_at": now,
        "capabilities_at": now,
        "node_classes": CATALOGUE,
        "model_files": {"checkpoints": [CHECKPOINT]},
    } | overrides


def make_docker_host(name: str | None = None, **fields: Any) -> DockerHost:
    """A saved, enabled DockerHost last seen OK, with ten ports (20000-20009) and no GPUs.

    Its URL is a socket that does not exist: code that calls its engine fails fast.
    """
    defaults: dict[str, Any] = {
        "docker_url": "unix:///nonexistent/docker.sock",
        "port_min": 20000,
        "port_max": 20009,
        "status": HostStatus.OK,
    }
    return DockerHost.objects.create(name=name or f"docker-{next(_sequence)}", **defaults | fields)


def make_pool(
    name: str | None = None, *, hosts: list[DockerHost] | None = None, **fields: Any
) -> ContainerPool:
    """A saved, enabled ContainerPool of the simulator image, restricted to `hosts` if any."""
    defaults: dict[str, Any] = {"image": "comfyweb-simulator:test", "max_size": 4}
    pool = ContainerPool.objects.create(name=name or f"pool-{next(_sequence)}", **defaults | fields)
    pool.hosts.set(hosts or [])
    return pool


def make_container(
    pool: ContainerPool, host: DockerHost | None = None, *, port: int | None = None, **fields: Any
) -> Container:
    """A saved Container row of `pool` (STARTING unless `state` says otherwise) on `host`
    (the pool's first host, else a new one), at its first free port. No engine is called."""
    host = host or pool.hosts.first() or make_docker_host()
    if port is None:
        held = set(Container.objects.holding().filter(host=host).values_list("port", flat=True))
        port = next(p for p in range(host.port_min, host.port_max + 1) if p not in held)
    return Container.objects.create(pool=pool, host=host, port=port, **fields)


# -- graphs, workflows, templates -----------------------------------------------------


def shared_workflow(name: str) -> dict[str, Any]:
    """A workflow from the shared folder, or its copy under tests/data if absent."""
    path = SHARED_WORKFLOWS / f"{name}.json"
    if not path.exists():
        path = WORKFLOW_COPIES / f"{name}.json"
    return json.loads(path.read_text())


def shared_workflow_names() -> list[str]:
    folder = SHARED_WORKFLOWS if SHARED_WORKFLOWS.is_dir() else WORKFLOW_COPIES
    return sorted(p.stem for p in folder.glob("*.json"))


def simulator_catalogue(tmp_path: pathlib.Path | None = None) -> dict[str, dict[str, Any]]:
    """The simulated server's /object_info, in process (no socket)."""
    input_dir = (tmp_path or pathlib.Path("/nonexistent")) / "input"
    return sim_catalogue.object_info(SimulatorConfig(), input_dir)


def trivial_graph(seed: int | None = None) -> dict[str, Any]:
    """The smallest graph a simulator runs: an empty latent decoded and saved."""
    return {
        "1": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": CHECKPOINT},
        },
        "2": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1},
        },
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["1", 0],
                "seed": seed if seed is not None else next(_sequence),
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


def make_workflow(
    team: Team,
    name: str | None = None,
    *,
    graph: dict[str, Any] | None = None,
    description: str = "",
    tags: list[str] | None = None,
    user=None,
) -> Workflow:
    """A workflow with one version (empty_save.json unless `graph` says otherwise)."""
    workflow = Workflow.objects.create(
        team=team,
        name=name or f"Workflow {next(_sequence)}",
        description=description,
        tags=tags or [],
        created_by=user,
    )
    add_version(workflow, graph or shared_workflow("empty_save"), user=user)
    return workflow


def add_version(workflow: Workflow, graph: dict[str, Any], *, user=None) -> WorkflowVersion:
    number = (
        workflow.versions.order_by("-number").values_list("number", flat=True).first() or 0
    ) + 1
    version = WorkflowVersion.objects.create(
        workflow=workflow, number=number, graph=graph, created_by=user
    )
    Workflow.objects.filter(pk=workflow.pk).update(current_version=version)
    workflow.current_version = version
    return version


def make_template(
    version: WorkflowVersion,
    name: str | None = None,
    *,
    parameters: list[dict[str, Any]] | None = None,
) -> Template:
    template = Template.objects.create(
        team=version.workflow.team,
        workflow_version=version,
        name=name or f"Template {next(_sequence)}",
    )
    for position, spec in enumerate(parameters or []):
        TemplateParameter.objects.create(template=template, position=position, **spec)
    return template


def empty_save_template(team: Team) -> Template:
    """A template on empty_save.json with width (int 1..2048), color (choice) and a prefix."""
    version = make_workflow(team).current_version
    return make_template(
        version,
        parameters=[
            {
                "name": "width",
                "node_id": "1",
                "input_name": "width",
                "type": ParameterType.INT,
                "default": 512,
                "minimum": 1,
                "maximum": 2048,
            },
            {
                "name": "color",
                "node_id": "1",
                "input_name": "color",
                "type": ParameterType.CHOICE,
                "default": 0,
                "choices": [0, 255, 65280],
            },
            {
                "name": "prefix",
                "node_id": "2",
                "input_name": "filename_prefix",
                "type": ParameterType.TEXT,
                "default": "comfyweb_empty",
            },
        ],
    )


# -- tasks ----------------------------------------------------------------------------


def make_task(
    team: Team | None = None,
    *,
    status: str | None = None,
    graph: dict[str, Any] | None = None,
    dispatched_to: Server | None = None,
    priority: int = Priority.NORMAL,
    created_at: datetime | None = None,
    **fields: Any,
) -> Task:
    """A task as submitting leaves it: pending, on `trivial_graph()`, its workflow key set.

    `dispatched_to=server` makes it a task as dispatch leaves it on that server
    instead: dispatched (unless `status` says otherwise) with a fresh prompt id as
    its first attempt and, while active, dispatched just now with the server's
    slot taken (and held by the task). (`server=` alone only sets the column.)
    """
    team = team or make_team()
    graph = graph or trivial_graph()
    status = status or (Status.DISPATCHED if dispatched_to is not None else Status.PENDING)
    active = status in Status.active()
    if dispatched_to is not None:
        fields |= {"server": dispatched_to, "prompt_id": Task.new_prompt_id(), "attempts": 1}
        if active:
            fields.setdefault("dispatched_at", timezone.now())
            fields.setdefault("slot_held", True)
    task = Task.objects.create(
        team=team,
        graph=graph,
        workflow_key=fields.pop("workflow_key", None) or workflow_key_of(graph),
        affinity_key=fields.pop("affinity_key", None) or affinity_key_of(graph, None),
        **({} if "speed_key" in fields else work.fields_of(graph)),
        priority=priority,
        status=status,
        created_at=created_at or timezone.now(),
        **fields,
    )
    TaskEvent.objects.create(task=task, to_status=status, message="made by the test")
    if dispatched_to is not None and active:
        ServerState.objects.filter(server=dispatched_to).update(inflight=1)
    return task


def aged(minutes: float) -> datetime:
    return timezone.now() - timedelta(minutes=minutes)
