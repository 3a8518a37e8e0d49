"""The fleet (S5, B8): everyone signed in reads it; staff add, change, remove and test."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from asgiref.sync import async_to_sync
from django.forms.models import model_to_dict
from django.shortcuts import get_object_or_404
from ninja import Router, Schema, Status
from pydantic import Field

from api import idempotency
from api.auth import require_staff
from api.errors import ERRORS, ApiError, ErrorOut, form_problems, invalid
from api.idempotency import IdempotencyKey
from api.schemas import PathId
from servers.forms import EDITABLE, ServerForm
from servers.models import FleetSettings, Server
from servers.probe import ProbeResult, probe
from servers.status_panel import servers_with_state
from tasks.models import Status as TaskStatus

router = Router(tags=["servers"])

# API name -> model field, where they differ.
RENAMED = {"url": "base_url"}


class FailureOut(Schema):
    at: datetime
    reason: str


class ServerOut(Schema):
    id: int
    name: str
    url: str
    kind: str
    enabled: bool
    is_primary: bool
    status: Literal["healthy", "unhealthy", "unknown"]
    priority: int
    weight: float
    max_inflight: int
    tags: list[str]
    inflight: int
    queue_running: int
    queue_pending: int
    response_ms: float | None
    last_checked_at: datetime | None
    last_failure: FailureOut | None


class ServerIn(Schema):
    name: str = Field(max_length=100)
    url: str = Field(max_length=300, description="Base URL, e.g. http://gpu-1:8188")
    kind: Literal["static", "simulated", "container", "local"] = "static"
    enabled: bool = True
    is_primary: bool = False
    priority: int = 100
    weight: float = 1.0
    max_inflight: int = 2
    tags: list[str] = []


class ServerPatch(Schema):
    name: str | None = Field(None, max_length=100)
    url: str | None = Field(None, max_length=300)
    kind: Literal["static", "simulated", "container", "local"] | None = None
    enabled: bool | None = None
    is_primary: bool | None = None
    priority: int | None = None
    weight: float | None = None
    max_inflight: int | None = None
    tags: list[str] | None = None


def server_json(server: Server) -> dict[str, Any]:
    state = getattr(server, "state", None)
    failure_at = getattr(server, "last_failure_at", None)
    return {
        "id": server.pk,
        "name": server.name,
        "url": server.base_url,
        "kind": server.kind,
        "enabled": server.enabled,
        "is_primary": server.is_primary,
        "status": state.health if state else "unknown",
        "priority": server.priority,
        "weight": server.weight,
        "max_inflight": server.max_inflight,
        "tags": list(server.tags or []),
        "inflight": state.inflight if state else 0,
        "queue_running": state.queue_running if state else 0,
        "queue_pending": state.queue_pending if state else 0,
        "response_ms": state.response_ms if state else None,
        "last_checked_at": state.last_checked_at if state else None,
        "last_failure": (
            {"at": failure_at, "reason": server.last_failure_reason} if failure_at else None
        ),
    }


def _server(pk: int) -> Server:
    return get_object_or_404(servers_with_state(), pk=pk)


def _save(data: dict[str, Any], instance: Server | None = None) -> Server:
    fields = {RENAMED.get(name, name): value for name, value in data.items()}
    current = model_to_dict(instance, fields=EDITABLE) if instance else {}
    merged = current | fields
    # The form's JSON field reads JSON text; an empty list must not become NULL.
    merged["tags"] = json.dumps(merged.get("tags") or [])
    form = ServerForm(data=merged, instance=instance)
    if not form.is_valid():
        raise invalid(form_problems(form, rename={v: k for k, v in RENAMED.items()}))
    return form.save()


@router.get(
    "/servers",
    response={200: list[ServerOut], **ERRORS},
    summary="List servers",
    description="The fleet: servers of removed containers are left out (GET /servers/{id} "
    "still finds them, for the tasks that ran there).",
)
def list_servers(request) -> list[dict[str, Any]]:
    return [server_json(server) for server in servers_with_state().in_fleet()]


@router.post(
    "/servers",
    response={201: ServerOut, **ERRORS, **idempotency.ERRORS},
    summary="Add a server (staff)",
)
def create_server(request, payload: ServerIn, idempotency_key: IdempotencyKey = None):
    return idempotency.once(
        request, idempotency_key, ServerOut, lambda: _create_server(request, payload)
    )


def _create_server(request, payload: ServerIn) -> Status:
    require_staff(request, "add servers")
    server = _save(payload.model_dump())
    return Status(201, server_json(_server(server.pk)))


@router.get("/servers/{server_id}", response={200: ServerOut, **ERRORS}, summary="One server")
def get_server(request, server_id: PathId) -> dict[str, Any]:
    return server_json(_server(server_id))


@router.patch(
    "/servers/{server_id}", response={200: ServerOut, **ERRORS}, summary="Change a server (staff)"
)
def update_server(request, server_id: PathId, payload: ServerPatch):
    require_staff(request, "change servers")
    server = get_object_or_404(Server, pk=server_id)
    _save(payload.model_dump(exclude_unset=True), instance=server)
    return server_json(_server(server.pk))


@router.delete(
    "/servers/{server_id}",
    response={204: None, 409: ErrorOut, **ERRORS},
    summary="Remove a server (staff)",
)
def delete_server(request, server_id: PathId):
    require_staff(request, "remove servers")
    server = get_object_or_404(Server, pk=server_id)
    active = server.tasks.filter(status__in=TaskStatus.active()).count()
    if active:
        raise ApiError(
            409,
            f"{server.name} has {active} task(s) in flight: disable it (PATCH enabled=false), "
            "let them finish, then remove it.",
            details={"inflight": active},
        )
    server.delete()
    return Status(204, None)


@router.post(
    "/servers/{server_id}/test",
    response={200: ProbeResult, **ERRORS},
    summary="Check a server now (staff)",
)
def test_server(request, server_id: PathId) -> ProbeResult:
    require_staff(request, "test servers")
    server = get_object_or_404(Server, pk=server_id)
    return async_to_sync(probe)(server, FleetSettings.load())
