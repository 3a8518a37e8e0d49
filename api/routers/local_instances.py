"""Local ComfyUI instances (#14, L1): staff only, reading included (they name paths
and processes of the machine ComfyWeb runs on).

Staff add, change and remove instances and ask the launcher (`manage.py launcher`)
to start, stop or restart them; no request spawns or signals a process. What the
launcher writes (state, pid, restarts, error) is never written here: a change saves
only the fields it names, and applies at the instance's next start.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from django.core.exceptions import ValidationError
from django.db import transaction
from django.shortcuts import get_object_or_404
from ninja import Query, Router, Schema, Status
from pydantic import Field

from api import idempotency
from api.auth import require_staff
from api.errors import ERRORS, invalid, model_problems
from api.idempotency import IdempotencyKey
from api.schemas import PathId
from servers.local import console, control
from servers.local.models import LocalInstance

router = Router(tags=["local instances"])

PORT = {"ge": 1024, "le": 65535}


class LocalInstanceOut(Schema):
    id: int
    name: str
    comfyui_dir: str = Field(description="The directory holding main.py; empty with a script")
    start_script: str = Field(description="Run instead of main.py; empty with a directory")
    python: str
    port: int = Field(description="ComfyUI listens on 127.0.0.1 at this port")
    args: list[str]
    environment: dict[str, str]
    gpus: list[str] = Field(description="CUDA_VISIBLE_DEVICES")
    autostart: bool
    auto_restart: bool
    wanted: Literal["running", "stopped"] = Field(description="What staff asked")
    state: Literal["stopped", "starting", "running", "stopping", "crashed", "error"]
    pid: int | None
    server: int | None = Field(description="Its server in the fleet, once ComfyUI answered")
    restarts: int = Field(description="Automatic restarts after crashes")
    started_at: datetime | None
    error: str


class LocalInstanceIn(Schema):
    name: str = Field(max_length=60)
    comfyui_dir: str = Field("", max_length=500)
    start_script: str = Field("", max_length=500)
    python: str = Field("python3", max_length=500)
    port: int = Field(..., **PORT)
    args: list[str] = []
    environment: dict[str, str] = {}
    gpus: list[str] = []
    autostart: bool = False
    auto_restart: bool = True


class LocalInstancePatch(Schema):
    name: str | None = Field(None, max_length=60)
    comfyui_dir: str | None = Field(None, max_length=500)
    start_script: str | None = Field(None, max_length=500)
    python: str | None = Field(None, max_length=500)
    port: int | None = Field(None, **PORT)
    args: list[str] | None = None
    environment: dict[str, str] | None = None
    gpus: list[str] | None = None
    autostart: bool | None = None
    auto_restart: bool | None = None


class LogsOut(Schema):
    lines: list[str] = Field(description="Its last console lines, oldest first")


class LogsQuery(Schema):
    tail: int = Field(100, ge=1, le=console.LINES_KEPT, description="How many lines")


def instance_json(instance: LocalInstance) -> dict[str, Any]:
    return {
        "id": instance.pk,
        "name": instance.name,
        "comfyui_dir": instance.comfyui_dir,
        "start_script": instance.start_script,
        "python": instance.python,
        "port": instance.port,
        "args": instance.args,
        "environment": instance.environment,
        "gpus": instance.gpus,
        "autostart": instance.autostart,
        "auto_restart": instance.auto_restart,
        "wanted": instance.wanted,
        "state": instance.state,
        "pid": instance.pid,
        "server": instance.server_id,
        "restarts": instance.restarts,
        "started_at": instance.started_at,
        "error": instance.error,
    }


def _staff_instance(request, pk: int, action: str) -> LocalInstance:
    require_staff(request, action)
    return get_object_or_404(LocalInstance, pk=pk)


def _save(instance: LocalInstance, data: dict[str, Any]) -> LocalInstance:
    """Validated as the admin validates it: a 400 naming every field otherwise. Saves
    only the fields in `data` (the launcher writes the rest)."""
    for name, value in data.items():
        setattr(instance, name, value)
    try:
        instance.full_clean()
    except ValidationError as exc:
        raise invalid(model_problems(exc)) from exc
    if instance.pk is None:
        instance.save()
    else:
        instance.save(update_fields=list(data))
    return instance


@router.get(
    "/local-instances",
    response={200: list[LocalInstanceOut], **ERRORS},
    summary="List local ComfyUI instances (staff)",
)
def list_instances(request) -> list[dict[str, Any]]:
    require_staff(request, "see local instances")
    return [instance_json(instance) for instance in LocalInstance.objects.all()]


@router.post(
    "/local-instances",
    response={201: LocalInstanceOut, **ERRORS, **idempotency.ERRORS},
    summary="Add a local ComfyUI instance (staff)",
    description="Added stopped (or started with ComfyWeb, with autostart): start it with "
    "POST .../start.",
)
def create_instance(request, payload: LocalInstanceIn, idempotency_key: IdempotencyKey = None):
    return idempotency.once(
        request, idempotency_key, LocalInstanceOut, lambda: _create(request, payload)
    )


def _create(request, payload: LocalInstanceIn) -> Status:
    require_staff(request, "add local instances")
    with transaction.atomic():
        instance = _save(LocalInstance(), payload.model_dump())
    return Status(201, instance_json(instance))


@router.get(
    "/local-instances/{instance_id}",
    response={200: LocalInstanceOut, **ERRORS},
    summary="One local ComfyUI instance (staff)",
)
def get_instance(request, instance_id: PathId) -> dict[str, Any]:
    return instance_json(_staff_instance(request, instance_id, "see local instances"))


@router.patch(
    "/local-instances/{instance_id}",
    response={200: LocalInstanceOut, **ERRORS},
    summary="Change a local ComfyUI instance (staff)",
    description="A running instance keeps its process: the change applies at its next "
    "start (restart it).",
)
def update_instance(request, instance_id: PathId, payload: LocalInstancePatch) -> dict[str, Any]:
    instance = _staff_instance(request, instance_id, "change local instances")
    with transaction.atomic():
        _save(instance, payload.model_dump(exclude_unset=True))
    return instance_json(instance)


@router.delete(
    "/local-instances/{instance_id}",
    response={204: None, **ERRORS},
    summary="Remove a local ComfyUI instance (staff)",
    description="Its server leaves the fleet at once; the launcher stops its process.",
)
def delete_instance(request, instance_id: PathId):
    control.delete_instance(_staff_instance(request, instance_id, "remove local instances"))
    return Status(204, None)


def _ask(request, pk: int, verb: str, ask) -> dict[str, Any]:
    instance = _staff_instance(request, pk, f"{verb} local instances")
    ask(instance)
    return instance_json(instance)


@router.post(
    "/local-instances/{instance_id}/start",
    response={200: LocalInstanceOut, **ERRORS},
    summary="Start a local ComfyUI instance (staff)",
    description="The launcher starts it within a second; a crashed or refused one is "
    "given a fresh start.",
)
def start_instance(request, instance_id: PathId) -> dict[str, Any]:
    return _ask(request, instance_id, "start", control.request_start)


@router.post(
    "/local-instances/{instance_id}/stop",
    response={200: LocalInstanceOut, **ERRORS},
    summary="Stop a local ComfyUI instance (staff)",
)
def stop_instance(request, instance_id: PathId) -> dict[str, Any]:
    return _ask(request, instance_id, "stop", control.request_stop)


@router.post(
    "/local-instances/{instance_id}/restart",
    response={200: LocalInstanceOut, **ERRORS},
    summary="Restart a local ComfyUI instance (staff)",
)
def restart_instance(request, instance_id: PathId) -> dict[str, Any]:
    return _ask(request, instance_id, "restart", control.request_restart)


@router.get(
    "/local-instances/{instance_id}/logs",
    response={200: LogsOut, **ERRORS},
    summary="A local ComfyUI instance's last console lines (staff)",
)
def instance_logs(request, instance_id: PathId, query: Query[LogsQuery]) -> dict[str, list[str]]:
    instance = _staff_instance(request, instance_id, "read local instances' consoles")
    return {"lines": console.console_tail(instance, query.tail)}
