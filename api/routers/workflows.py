"""Workflows (S2): the same form, saving and validation as the workflow pages."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.shortcuts import get_object_or_404
from ninja import Router, Schema, Status
from pydantic import Field

from api import idempotency
from api.errors import ERRORS, ApiError, ErrorOut, form_problems, invalid
from api.idempotency import IdempotencyKey
from api.lookup import team_to_create_in
from api.schemas import Id, PathId, QueryId, Ref, ref
from servers.models import Server
from teams.access import require
from workflows import store
from workflows.access import workflow_for
from workflows.forms.workflows import WorkflowForm
from workflows.models import Workflow, WorkflowVersion
from workflows.validation import (
    CatalogueUnavailable,
    ValidationReport,
    fetch_catalogue,
    validate_graph,
)

router = Router(tags=["workflows"])

# Form field -> API field.
RENAMED = {"graph_text": "graph", "graph_file": "graph", "check_server": "check_server"}


class ModelFile(Schema):
    folder: str
    name: str


class WorkflowOut(Schema):
    id: int
    name: str
    description: str
    tags: list[str]
    team: Ref
    version: int | None = Field(description="The current version's number.")
    versions: list[int]
    node_classes: list[str]
    models: list[ModelFile]
    created_at: datetime
    updated_at: datetime


class WorkflowDetail(WorkflowOut):
    graph: dict[str, Any] | None


class WorkflowIn(Schema):
    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    tags: list[str] = []
    graph: dict[str, Any] = Field(description="API-format graph (ComfyUI: Export (API)).")
    team: Id | None = Field(None, description="Needed when you are in several teams.")
    note: str = Field("", max_length=200, description="What this version is.")
    check_server: Id | None = Field(
        None, description="Also validate against this server's node catalogue."
    )


class WorkflowPatch(Schema):
    name: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = None
    tags: list[str] | None = None
    graph: dict[str, Any] | None = Field(None, description="A changed graph makes a new version.")
    note: str = Field("", max_length=200)
    check_server: Id | None = None


class ValidateIn(Schema):
    server: Id | None = Field(None, description="Check against this server's catalogue.")
    version: int | None = Field(None, description="A version number; default the current one.")


class ValidationOut(Schema):
    valid: bool
    errors: list[str]
    node_errors: dict[str, list[dict[str, Any]]]
    checked_against: str = ""


def workflow_json(workflow: Workflow, *, with_graph: bool = False) -> dict[str, Any]:
    version = workflow.current_version
    data = {
        "id": workflow.pk,
        "name": workflow.name,
        "description": workflow.description,
        "tags": list(workflow.tags or []),
        "team": ref(workflow.team),
        "version": version.number if version else None,
        "versions": sorted(workflow.versions.values_list("number", flat=True)),
        "node_classes": list(version.node_classes) if version else [],
        "models": [{"folder": f, "name": n} for f, n in (version.model_files if version else [])],
        "created_at": workflow.created_at,
        "updated_at": workflow.updated_at,
    }
    if with_graph:
        data["graph"] = version.graph if version else None
    return data


def _form_data(fields: dict[str, Any]) -> dict[str, Any]:
    """API fields -> the page form's fields (the graph goes in as pasted JSON)."""
    data = {
        "name": fields.get("name", ""),
        "description": fields.get("description", ""),
        "tags": ", ".join(fields.get("tags") or []),
        "note": fields.get("note", ""),
    }
    if fields.get("graph") is not None:
        data["graph_text"] = json.dumps(fields["graph"])
    if fields.get("team") is not None:
        data["team"] = str(fields["team"])
    if fields.get("check_server") is not None:
        data["check_server"] = str(fields["check_server"])
    return data


def _rejected(form: WorkflowForm) -> ApiError:
    report = form.report
    extra = {"node_errors": report.node_errors, "errors": report.messages} if report else {}
    return invalid(form_problems(form, rename=RENAMED), **extra)


def _details(form: WorkflowForm) -> dict[str, Any]:
    """What `workflows.store` saves from the form, or the API's 400 if it is not valid."""
    if not form.is_valid():
        raise _rejected(form)
    return form.saved_fields()


@router.get("/workflows", response={200: list[WorkflowOut], **ERRORS}, summary="List or search")
def list_workflows(request, q: str = "", team: QueryId = None) -> list[dict[str, Any]]:
    """Workflows of your teams; `q` matches name, description, tags and node types."""
    workflows = Workflow.objects.for_user(request.user).select_related("team", "current_version")
    if team is not None:
        workflows = workflows.filter(team_id=team)
    workflows = store.search(workflows, q)
    return [workflow_json(w) for w in workflows.order_by("name", "team__name")[:500]]


@router.post(
    "/workflows",
    response={201: WorkflowDetail, **ERRORS, **idempotency.ERRORS},
    summary="Upload a workflow",
)
def create_workflow(request, payload: WorkflowIn, idempotency_key: IdempotencyKey = None):
    return idempotency.once(
        request, idempotency_key, WorkflowDetail, lambda: _create_workflow(request, payload)
    )


def _create_workflow(request, payload: WorkflowIn) -> Status:
    fields = payload.model_dump()
    team = team_to_create_in(request.user, fields["team"])
    form = WorkflowForm(_form_data(fields | {"team": team.pk}), user=request.user)
    details = _details(form)
    workflow = store.create_workflow(team=form.cleaned_data["team"], user=request.user, **details)
    return Status(201, workflow_json(workflow_for(request.user, workflow.pk), with_graph=True))


@router.get(
    "/workflows/{workflow_id}", response={200: WorkflowDetail, **ERRORS}, summary="One workflow"
)
def get_workflow(request, workflow_id: PathId) -> dict[str, Any]:
    return workflow_json(workflow_for(request.user, workflow_id), with_graph=True)


@router.patch(
    "/workflows/{workflow_id}",
    response={200: WorkflowDetail, **ERRORS},
    summary="Change details; a new graph is a new version",
)
def update_workflow(request, workflow_id: PathId, payload: WorkflowPatch) -> dict[str, Any]:
    workflow = workflow_for(request.user, workflow_id)
    require(workflow.team.can_submit(request.user), "edit workflows")
    current = {
        "name": workflow.name,
        "description": workflow.description,
        "tags": workflow.tags,
    }
    fields = current | payload.model_dump(exclude_unset=True)
    form = WorkflowForm(_form_data(fields), user=request.user, workflow=workflow)
    store.update_workflow(workflow, user=request.user, **_details(form))
    return workflow_json(workflow_for(request.user, workflow.pk), with_graph=True)


@router.delete(
    "/workflows/{workflow_id}",
    response={204: None, 409: ErrorOut, **ERRORS},
    summary="Delete (refused while tasks reference it)",
)
def delete_workflow(request, workflow_id: PathId):
    workflow = workflow_for(request.user, workflow_id)
    require(workflow.team.can_manage(request.user), "delete workflows")
    try:
        store.delete_workflow(workflow)
    except store.WorkflowInUse as refused:
        raise ApiError(
            409, str(refused), details={"tasks": store.tasks_using(workflow)}
        ) from refused
    return Status(204, None)


@router.post(
    "/workflows/{workflow_id}/validate",
    response={200: ValidationOut, **ERRORS},
    summary="Validate a version (against a server's catalogue if named)",
)
def validate_workflow(request, workflow_id: PathId, payload: ValidateIn) -> dict[str, Any]:
    workflow = workflow_for(request.user, workflow_id)
    version: WorkflowVersion | None = workflow.current_version
    if payload.version is not None:
        version = get_object_or_404(workflow.versions, number=payload.version)
    if version is None:
        raise ApiError(409, "This workflow has no version to validate.")
    if payload.server is None:
        report = validate_graph(version.graph)
    else:
        server = get_object_or_404(Server.objects.enabled(), pk=payload.server)
        try:
            catalogue = fetch_catalogue(server)
        except CatalogueUnavailable as exc:
            report = ValidationReport(checked_against=server.name)
            report.add("server_unavailable", str(exc))
        else:
            report = validate_graph(version.graph, catalogue, server_name=server.name)
    return report.as_json() | {"checked_against": report.checked_against}
