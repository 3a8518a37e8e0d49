"""Docker hosts (#13): everyone signed in reads them; staff add, change, remove and check."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.shortcuts import get_object_or_404
from ninja import Router, Schema, Status
from pydantic import Field

from api import idempotency
from api.auth import require_staff
from api.errors import ERRORS, ApiError, ErrorOut
from api.idempotency import IdempotencyKey
from api.schemas import PathId
from servers.containers.engines import check_host
from servers.containers.models import DockerHost, HostStatus

router = Router(tags=["docker hosts"])


class DockerHostOut(Schema):
    id: int
    name: str
    docker_url: str
    publish_address: str
    port_min: int
    port_max: int
    gpus: list[str]
    models_dir: str = Field(description="Where the models library is on that machine, as set")
    library_dir: str = Field(
        description="What its containers mount read-only; empty: none (a tcp engine without "
        "models_dir)"
    )
    enabled: bool
    status: Literal["ok", "unreachable", "unknown"]
    error: str
    engine_id: str
    engine_version: str
    checked_at: datetime | None
    containers: int = Field(description="Containers holding a port there now")


class DockerHostIn(Schema):
    name: str = Field(max_length=100)
    docker_url: str = Field(max_length=300, description="unix:///path or tcp://host:port")
    publish_address: str = "127.0.0.1"
    port_min: int = Field(20000, ge=1, le=65535)
    port_max: int = Field(20099, ge=1, le=65535)
    gpus: list[str] = []
    models_dir: str = Field(
        "",
        max_length=500,
        description="Where the models library is on the engine's machine; empty: ComfyWeb's "
        "own for a unix:// engine, none for tcp://",
    )
    enabled: bool = True


class DockerHostPatch(Schema):
    name: str | None = Field(None, max_length=100)
    docker_url: str | None = Field(None, max_length=300)
    publish_address: str | None = None
    port_min: int | None = Field(None, ge=1, le=65535)
    port_max: int | None = Field(None, ge=1, le=65535)
    gpus: list[str] | None = None
    models_dir: str | None = Field(None, max_length=500)
    enabled: bool | None = None


def hosts() -> QuerySet[DockerHost]:
    return DockerHost.objects.annotate(
        held=Count("containers", filter=Q(containers__stopped_at__isnull=True))
    )


def host_json(host: DockerHost) -> dict[str, Any]:
    return {
        "id": host.pk,
        "name": host.name,
        "docker_url": host.docker_url,
        "publish_address": host.publish_address,
        "port_min": host.port_min,
        "port_max": host.port_max,
        "gpus": list(host.gpus or []),
        "models_dir": host.models_dir,
        "library_dir": host.library_dir,
        "enabled": host.enabled,
        "status": host.status,
        "error": host.error,
        "engine_id": host.engine_id,
        "engine_version": host.engine_version,
        "checked_at": host.checked_at,
        "containers": host.held,
    }


def _host(pk: int) -> DockerHost:
    return get_object_or_404(hosts(), pk=pk)


def _save(host: DockerHost, data: dict[str, Any]) -> DockerHost:
    """Validated as the admin validates it (model validators and clean): a 400 otherwise."""
    if "docker_url" in data and data["docker_url"] != host.docker_url:
        # Another engine, maybe: what we saw of the old one no longer says anything.
        data |= {"status": HostStatus.UNKNOWN, "engine_id": "", "engine_version": "", "error": ""}
    for name, value in data.items():
        setattr(host, name, value)
    host.full_clean()
    host.save()
    return host


@router.get(
    "/docker-hosts", response={200: list[DockerHostOut], **ERRORS}, summary="List Docker hosts"
)
def list_hosts(request) -> list[dict[str, Any]]:
    return [host_json(host) for host in hosts()]


@router.post(
    "/docker-hosts",
    response={201: DockerHostOut, **ERRORS, **idempotency.ERRORS},
    summary="Add a Docker host (staff)",
)
def create_host(request, payload: DockerHostIn, idempotency_key: IdempotencyKey = None):
    return idempotency.once(
        request, idempotency_key, DockerHostOut, lambda: _create_host(request, payload)
    )


def _create_host(request, payload: DockerHostIn) -> Status:
    require_staff(request, "add Docker hosts")
    host = _save(DockerHost(), payload.model_dump())
    return Status(201, host_json(_host(host.pk)))


@router.get(
    "/docker-hosts/{host_id}", response={200: DockerHostOut, **ERRORS}, summary="One Docker host"
)
def get_host(request, host_id: PathId) -> dict[str, Any]:
    return host_json(_host(host_id))


@router.patch(
    "/docker-hosts/{host_id}",
    response={200: DockerHostOut, **ERRORS},
    summary="Change a Docker host (staff)",
)
def update_host(request, host_id: PathId, payload: DockerHostPatch):
    require_staff(request, "change Docker hosts")
    host = get_object_or_404(DockerHost, pk=host_id)
    _save(host, payload.model_dump(exclude_unset=True))
    return host_json(_host(host.pk))


@router.delete(
    "/docker-hosts/{host_id}",
    response={204: None, 409: ErrorOut, **ERRORS},
    summary="Remove a Docker host (staff)",
)
def delete_host(request, host_id: PathId):
    require_staff(request, "remove Docker hosts")
    host = _host(host_id)
    if host.held:
        raise ApiError(
            409,
            f"{host.name} has {host.held} container(s): disable it (PATCH enabled=false), "
            "let its containers be removed, then remove it.",
            details={"containers": host.held},
        )
    with transaction.atomic():
        host.containers.all().delete()  # the record of removed ones goes with it
        host.delete()
    return Status(204, None)


@router.post(
    "/docker-hosts/{host_id}/check",
    response={200: DockerHostOut, **ERRORS},
    summary="Check a Docker host's engine now (staff)",
)
def check_docker_host(request, host_id: PathId) -> dict[str, Any]:
    require_staff(request, "check Docker hosts")
    check_host(get_object_or_404(DockerHost, pk=host_id))
    return host_json(_host(host_id))
