"""Builders for workflows, versions, templates and the shared workflow files."""

from __future__ import annotations

import itertools
import json
import pathlib
from typing import Any

from servers.simulator import catalogue as sim_catalogue
from servers.simulator.config import SimulatorConfig
from teams.models import Team
from workflows.models import ParameterType, Template, TemplateParameter, Workflow, WorkflowVersion

SHARED_WORKFLOWS = pathlib.Path("/work/shared/comfyui/workflows")
_sequence = itertools.count(1)


def shared_workflow(name: str) -> dict[str, Any]:
    """A workflow from the shared folder, or the copy under tests/tasks/data if absent."""
    path = SHARED_WORKFLOWS / f"{name}.json"
    if not path.exists():
        path = pathlib.Path(__file__).with_name("data") / f"{name}.json"
    return json.loads(path.read_text())


def shared_workflow_names() -> list[str]:
    folder = (
        SHARED_WORKFLOWS if SHARED_WORKFLOWS.is_dir() else pathlib.Path(__file__).with_name("data")
    )
    return sorted(p.stem for p in folder.glob("*.json"))


def simulator_catalogue(tmp_path: pathlib.Path | None = None) -> dict[str, dict[str, Any]]:
    """The simulated server's /object_info, in process (no socket)."""
    input_dir = (tmp_path or pathlib.Path("/nonexistent")) / "input"
    return sim_catalogue.object_info(SimulatorConfig(), input_dir)


def make_workflow(
    team: Team,
    name: str | None = None,
    *,
    graph: dict[str, Any] | None = None,
    description: str = "",
    tags: list[str] | None = None,
    user=None,
) -> Workflow:
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
