"""Container pools (#13): everyone signed in reads them, with their containers and the
scheduler's last decisions; staff add, change, scale and remove them.

Every write wakes the scheduler (`servers.containers.tending.wake`, on commit) so it
acts at once instead of at its next minute. What the scheduler writes (desired size,
decision, backoff, catalogue) is never written here: a change saves only the
fields it names, so it cannot put back an older decision over a newer one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Prefetch, QuerySet
from django.shortcuts import get_object_or_404
from ninja import Router, Schema, Status
from pydantic import Field

from api import idempotency
from api.auth import require_staff
from api.errors import ERRORS, ApiError, ErrorOut, invalid, model_problems
from api.idempotency import IdempotencyKey
from api.schemas import Id, PathId
from servers.containers import lifecycle, tending
from servers.containers.models import (
    DEFAULT_MODELS_MOUNT,
    Container,
    ContainerPool,
    DockerHost,
    ScalingDecision,
)

router = Router(tags=["container pools"])

DECISIONS_SHOWN = 10
SMALL = 32767  # PositiveSmallIntegerField's largest, on every database we run on
SECONDS = 2147483647  # PositiveIntegerField's


class PoolContainerOut(Schema):
    id: int
    host: int
    host_name: str
    port: int
    gpus: list[str]
    state: Literal["starting", "running", "error", "stopping"]
    server: int | None = Field(description="Its server in the fleet, once ComfyUI answered")
    docker_id: str
    created_at: datetime
    started_at: datetime | None
    error: str
    stop_reason: str


class DecisionOut(Schema):
    at: datetime
    desired: int
    live: int = Field(description="Containers starting or running")
    work: int = Field(description="Pending work it can run, and work in flight on it")
    action: str
    reason: str


class PoolOut(Schema):
    id: int
    name: str
    image: str
    command: list[str] | None
    environment: dict[str, str]
    volumes: list[str]
    models_mount: str = Field(
        description="Where the models library is mounted read-only in each container; "
        "empty: not mounted"
    )
    container_port: int
    min_size: int
    max_size: int
    jobs_per_container: int
    gpus_per_container: int
    idle_seconds: int
    hosts: list[int] | None = Field(description="Docker host ids; null: every host")
    enabled: bool
    pinned_size: int | None
    desired_size: int
    decision: str = Field(description="Why the scheduler chose the desired size")
    deleting: bool = Field(description="Being removed: its containers drain first")
    containers: list[PoolContainerOut] = Field(description="Those not yet removed")
    decisions: list[DecisionOut] = Field(description="The last ten, newest first")


class PoolIn(Schema):
    name: str = Field(max_length=100)
    image: str = Field(max_length=300, description="Present on every host: never pulled")
    command: list[str] | None = Field(None, description="null: the image's own")
    environment: dict[str, str] = {}
    volumes: list[str] = Field([], description='"source:target[:ro|rw]" each')
    models_mount: str = Field(
        DEFAULT_MODELS_MOUNT,
        max_length=300,
        description="ComfyUI's models/ directory in the image; empty: no models library",
    )
    container_port: int = Field(8188, ge=1, le=65535)
    min_size: int = Field(0, ge=0, le=SMALL)
    max_size: int = Field(1, ge=0, le=SMALL)
    jobs_per_container: int = Field(2, ge=1, le=SMALL)
    gpus_per_container: int = Field(0, ge=0, le=SMALL)
    idle_seconds: int = Field(300, ge=0, le=SECONDS)
    hosts: list[Id] | None = Field(None, description="Docker host ids; null or []: every host")
    enabled: bool = True


class PoolPatch(Schema):
    name: str | None = Field(None, max_length=100)
    image: str | None = Field(None, max_length=300)
    command: list[str] | None = None
    environment: dict[str, str] | None = None
    volumes: list[str] | None = None
    models_mount: str | None = Field(None, max_length=300)
    container_port: int | None = Field(None, ge=1, le=65535)
    min_size: int | None = Field(None, ge=0, le=SMALL)
    max_size: int | None = Field(None, ge=0, le=SMALL)
    jobs_per_container: int | None = Field(None, ge=1, le=SMALL)
    gpus_per_container: int | None = Field(None, ge=0, le=SMALL)
    idle_seconds: int | None = Field(None, ge=0, le=SECONDS)
    hosts: list[Id] | None = None
    enabled: bool | None = None


class ScaleIn(Schema):
    size: int | None = Field(
        ..., ge=0, le=SMALL, description="Containers to keep (0 to max_size); null: unpin"
    )


def pools() -> QuerySet[ContainerPool]:
    return ContainerPool.objects.prefetch_related(
        "hosts",
        Prefetch(
            "containers",
            queryset=Container.objects.holding().select_related("host"),
            to_attr="held",
        ),
        Prefetch(
            "decisions",
            queryset=ScalingDecision.objects.order_by("-at", "-pk")[:DECISIONS_SHOWN],
            to_attr="recent",
        ),
    )


def container_json(container: Container) -> dict[str, Any]:
    return {
        "id": container.pk,
        "host": container.host_id,
        "host_name": container.host.name,
        "port": container.port,
        "gpus": list(container.gpus or []),
        "state": container.state,
        "server": container.server_id,
        "docker_id": container.docker_id,
        "created_at": container.created_at,
        "started_at": container.started_at,
        "error": container.error,
        "stop_reason": container.stop_reason,
    }


def pool_json(pool: ContainerPool) -> dict[str, Any]:
    hosts = sorted(host.pk for host in pool.hosts.all())
    return {
        "id": pool.pk,
        "name": pool.name,
        "image": pool.image,
        "command": pool.command,
        "environment": pool.environment,
        "volumes": pool.volumes,
        "models_mount": pool.models_mount,
        "container_port": pool.container_port,
        "min_size": pool.min_size,
        "max_size": pool.max_size,
        "jobs_per_container": pool.jobs_per_container,
        "gpus_per_container": pool.gpus_per_container,
        "idle_seconds": pool.idle_seconds,
        "hosts": hosts or None,
        "enabled": pool.enabled,
        "pinned_size": pool.pinned_size,
        "desired_size": pool.desired_size,
        "decision": pool.decision,
        "deleting": pool.delete_requested_at is not None,
        "containers": [container_json(container) for container in pool.held],
        "decisions": [
            {
                "at": decision.at,
                "desired": decision.desired,
                "live": decision.live,
                "work": decision.work,
                "action": decision.action,
                "reason": decision.reason,
            }
            for decision in pool.recent
        ],
    }


def _pool(pk: int) -> ContainerPool:
    return get_object_or_404(pools(), pk=pk)


def _locked(pk: int) -> ContainerPool:
    """The pool, locked until the transaction ends (the scheduler may be deleting it);
    a 409 if it is being deleted: draining it is all that is left to do."""
    pool = get_object_or_404(ContainerPool.objects.select_for_update(), pk=pk)
    if pool.delete_requested_at is not None:
        raise ApiError(409, f"{pool.name} is being deleted: its containers are draining.")
    return pool


def _save(pool: ContainerPool, data: dict[str, Any]) -> ContainerPool:
    """Validated as the admin validates it (model validators and clean; the hosts must
    exist): a 400 naming every field otherwise. Saves only the fields in `data`."""
    hosts = data.pop("hosts", ...)
    for name, value in data.items():
        setattr(pool, name, value)
    problems = []
    try:
        pool.full_clean()
    except ValidationError as exc:
        problems += model_problems(exc)
    if hosts is not ... and hosts:
        known = set(DockerHost.objects.filter(pk__in=hosts).values_list("pk", flat=True))
        problems += [("hosts", f"No Docker host has id {pk}.") for pk in hosts if pk not in known]
    if problems:
        raise invalid(problems)
    if pool.pk is None:
        pool.save()
    else:
        pool.save(update_fields=list(data))  # nothing else: the scheduler writes the rest
    if hosts is not ...:
        pool.hosts.set(hosts or [])
    return pool


def _wake() -> None:
    """The scheduler acts on it now, once the change is committed (a job that ran
    sooner would not see it)."""
    transaction.on_commit(tending.wake, robust=True)


@router.get("/pools", response={200: list[PoolOut], **ERRORS}, summary="List container pools")
def list_pools(request) -> list[dict[str, Any]]:
    return [pool_json(pool) for pool in pools()]


@router.post(
    "/pools",
    response={201: PoolOut, **ERRORS, **idempotency.ERRORS},
    summary="Add a container pool (staff)",
)
def create_pool(request, payload: PoolIn, idempotency_key: IdempotencyKey = None):
    return idempotency.once(
        request, idempotency_key, PoolOut, lambda: _create_pool(request, payload)
    )


def _create_pool(request, payload: PoolIn) -> Status:
    require_staff(request, "add container pools")
    with transaction.atomic():
        pool = _save(ContainerPool(), payload.model_dump())
    _wake()
    return Status(201, pool_json(_pool(pool.pk)))


@router.get("/pools/{pool_id}", response={200: PoolOut, **ERRORS}, summary="One container pool")
def get_pool(request, pool_id: PathId) -> dict[str, Any]:
    return pool_json(_pool(pool_id))


@router.patch(
    "/pools/{pool_id}",
    response={200: PoolOut, 409: ErrorOut, **ERRORS},
    summary="Change a container pool (staff)",
)
def update_pool(request, pool_id: PathId, payload: PoolPatch) -> dict[str, Any]:
    require_staff(request, "change container pools")
    with transaction.atomic():
        _save(_locked(pool_id), payload.model_dump(exclude_unset=True))
    _wake()
    return pool_json(_pool(pool_id))


@router.post(
    "/pools/{pool_id}/scale",
    response={200: PoolOut, 409: ErrorOut, **ERRORS},
    summary="Pin a container pool's size, or unpin it (staff)",
)
def scale_pool(request, pool_id: PathId, payload: ScaleIn) -> dict[str, Any]:
    require_staff(request, "scale container pools")
    with transaction.atomic():
        pool = _locked(pool_id)
        if payload.size is not None and payload.size > pool.max_size:
            raise invalid([("size", f"At most the pool's maximum size, {pool.max_size}.")])
        lifecycle.pin_size(pool, payload.size)
    _wake()
    return pool_json(_pool(pool_id))


@router.delete(
    "/pools/{pool_id}",
    response={202: PoolOut, 204: None, **ERRORS},
    summary="Remove a container pool (staff)",
    description="204: removed at once (it had no containers). 202: its containers drain "
    "and are removed first, then the pool goes; it is disabled meanwhile.",
)
def delete_pool(request, pool_id: PathId):
    require_staff(request, "remove container pools")
    pool = get_object_or_404(ContainerPool, pk=pool_id)
    gone = pool.delete_requested_at is None and lifecycle.request_delete(pool)
    _wake()
    # The scheduler removes a deleting pool once its last container is gone: maybe now.
    remaining = pools().filter(pk=pool_id).first()
    if gone or remaining is None:
        return Status(204, None)
    return Status(202, pool_json(remaining))
