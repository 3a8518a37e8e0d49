"""The Docker engines of the configured hosts: the one module that speaks the Docker API.

Calls here block (the `docker` SDK is synchronous): call them from the worker, or
through `sync_to_async` from async code, never on an event loop.

Every container ComfyWeb makes carries three labels: this deployment's id, its
pool's id and its `Container` row's id. Identity is by label, not by name, so a
container whose id never reached its row (the worker died between create and
save) is still found (`labelled`) and removed (`remove_by_id`).

Every container also gets the models library, read-only, at its pool's models
mount (`ContainerPool.library_bind`): a file downloaded into the library is one
its ComfyUI lists at once.

Failures reach callers as `EngineError` (its message names the host), never as
the SDK's, requests' or urllib3's own exceptions.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.types
import urllib3.exceptions
from django.conf import settings
from django.utils import timezone

from servers.containers.models import Container, DockerHost, HostStatus
from servers.models import FleetSettings

# Seconds one Docker API call may take. `docker info` answers in milliseconds on a
# healthy engine; a host slower than this is as good as unreachable for placement.
CHECK_TIMEOUT = 10.0
# Creating or removing a container writes to the engine's disk: give it longer.
CALL_TIMEOUT = 30.0
# ComfyUI is sent SIGTERM and killed this many seconds later: it holds nothing
# worth waiting for once the scheduler has decided it goes.
STOP_SECONDS = 5
ERROR_LIMIT = 1000  # characters of an error kept on the host

DEPLOYMENT_LABEL = "comfyweb.deployment"  # tests/docker_engines.py uses the same
POOL_LABEL = "comfyweb.pool"  # the pool's id
CONTAINER_LABEL = "comfyweb.container"  # the Container row's id

# What a call to an engine that is down or hung raises, depending on where the
# connection broke: the SDK's own errors, urllib3's, and OSError (the socket's,
# and requests' exceptions, which are OSErrors).
UNREACHABLE = (docker.errors.DockerException, urllib3.exceptions.HTTPError, OSError)


class EngineError(Exception):
    """The engine of a host refused or did not answer; the message names the host."""


class ImageMissing(EngineError):
    """The pool's image is not on the host (we never pull)."""


@dataclass(frozen=True)
class Observed:
    """One container as its engine described it (`docker inspect`)."""

    docker_id: str
    name: str
    running: bool
    status: str  # created, running, restarting, paused, exited, dead, removing
    exit_code: int | None  # None while running or never started
    labels: dict[str, str]
    oom_killed: bool = False
    error: str = ""  # the engine's own, e.g. why it could not start the process

    @property
    def container_row_id(self) -> int | None:
        return _int_label(self.labels, CONTAINER_LABEL)

    @property
    def pool_id(self) -> int | None:
        return _int_label(self.labels, POOL_LABEL)


def deployment_id() -> str:
    """This deployment's label value: the setting, else a stable id of the database.

    Two ComfyWebs sharing an engine (production and staging) each see only their own.
    """
    return settings.COMFYWEB_DEPLOYMENT or FleetSettings.load().deployment_id.hex[:12]


def client_for(host: DockerHost, timeout: float = CHECK_TIMEOUT) -> docker.DockerClient:
    """A client of `host`'s engine. Asks the engine its API version at once, so it
    raises (a DockerException) when nothing answers there."""
    return docker.DockerClient(base_url=host.docker_url, timeout=timeout)


def check_host(host: DockerHost, timeout: float = CHECK_TIMEOUT) -> DockerHost:
    """Ask `host`'s engine who it is (`docker info`) and record what it said.

    Reachable: status ok, its engine id and version. Not: status unreachable, the
    reason in `error`, the last engine id seen kept. Never raises for the engine's
    sake: a check is how we find out that a host is gone.
    """
    try:
        client = client_for(host, timeout)
        try:
            info = client.info()
        finally:
            client.close()
        seen = {
            "status": HostStatus.OK,
            "engine_id": str(info.get("ID") or ""),
            "engine_version": str(info.get("ServerVersion") or ""),
            "error": "",
        }
    # The SDK raises its own errors, requests' and urllib3's, and OSError from the
    # socket, depending on where the connection broke: for a check they mean the same.
    except Exception as exc:
        seen = {"status": HostStatus.UNREACHABLE, "error": describe(exc)}
    seen["checked_at"] = timezone.now()
    DockerHost.objects.filter(pk=host.pk).update(**seen)
    for name, value in seen.items():
        setattr(host, name, value)
    return host


def describe(exc: Exception) -> str:
    if isinstance(exc, docker.errors.APIError) and exc.explanation:
        text = str(exc.explanation)  # the engine's own words; str(exc) wraps them in the URL
    else:
        text = str(exc) or type(exc).__name__
    return text if len(text) <= ERROR_LIMIT else text[: ERROR_LIMIT - 1] + "…"


# -- containers ----------------------------------------------------------------------


def run_spec(container: Container) -> dict[str, Any]:
    """The arguments of `containers.create` that make `container` (a placed row) on its host."""
    pool, host = container.pool, container.host
    spec: dict[str, Any] = {
        "image": pool.image,
        "command": pool.command,  # None: the image's own
        "environment": pool.environment,
        "volumes": pool.volumes,
        "ports": {f"{pool.container_port}/tcp": (host.publish_address, container.port)},
        "labels": {
            DEPLOYMENT_LABEL: deployment_id(),
            POOL_LABEL: str(pool.pk),
            CONTAINER_LABEL: str(container.pk),
        },
        "name": _name(container),
        # A tiny init as PID 1: the server gets the SIGTERM of `stop` (PID 1 ignores
        # it unless it asks for it) and its children are reaped.
        "init": True,
        # No restart policy: a container that exits is the scheduler's to replace,
        # with its crash backoff, not the engine's to restart in a loop.
    }
    if bind := pool.library_bind(host):
        source, target = bind
        # A mount, not a volume string: a bind source missing on the engine's machine
        # is then refused at create (with the path) instead of made as an empty,
        # root-owned directory that hides the library behind a ComfyUI with no models.
        spec["mounts"] = [
            docker.types.Mount(target=target, source=source, type="bind", read_only=True)
        ]
    if container.gpus:
        spec["device_requests"] = [
            docker.types.DeviceRequest(device_ids=list(container.gpus), capabilities=[["gpu"]])
        ]
    return spec


def create_container(container: Container) -> str:
    """Create and start `container` on its host; its Docker id.

    Never pulls: an image missing there raises ImageMissing. A container that was
    created but would not start is removed before EngineError is raised.
    """
    host, spec = container.host, run_spec(container)
    _make_library(container)
    with _engine(host, CALL_TIMEOUT) as client:
        try:
            created = client.containers.create(**spec)
        except docker.errors.ImageNotFound as exc:
            raise ImageMissing(
                f"image {spec['image']} is not on Docker host {host.name} "
                "(ComfyWeb never pulls: load it there first)"
            ) from exc
        try:
            created.start()
        except UNREACHABLE as exc:
            # Best effort: one that stays (the engine went away meanwhile) carries
            # our labels, so the sweep of `labelled` containers removes it later.
            with contextlib.suppress(*UNREACHABLE):
                created.remove(force=True, v=True)
            raise EngineError(
                f"Docker host {host.name} could not start {spec['name']}: {describe(exc)}"
            ) from exc
    return created.id


def _make_library(container: Container) -> None:
    """The library directory exists before it is bound, when it is on this machine.

    A library nothing was downloaded into yet may not exist; on another machine
    (a tcp engine with its models directory set) staff make it, and the engine's
    refusal names the path if they did not.
    """
    host = container.host
    bind = container.pool.library_bind(host)
    if bind is None or not host.is_local:
        return
    try:
        Path(bind[0]).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EngineError(
            f"Docker host {host.name}: the models library {bind[0]} cannot be made: {exc}"
        ) from exc


def inspect(container: Container) -> Observed | None:
    """`container` as its engine sees it; None when the engine has no such container."""
    if not container.docker_id:
        return None  # never created (or its id never saved: see `labelled`)
    with _engine(container.host) as client:
        try:
            return _observed(client.api.inspect_container(container.docker_id))
        except docker.errors.NotFound:
            return None


def logs_tail(container: Container, lines: int = 30) -> str:
    """The last `lines` lines `container` wrote (stdout and stderr); "" when it is gone."""
    if not container.docker_id:
        return ""
    with _engine(container.host) as client:
        try:
            raw = client.api.logs(container.docker_id, stdout=True, stderr=True, tail=lines)
        except docker.errors.NotFound:
            return ""
    return raw.decode(errors="replace")


def remove(container: Container) -> None:
    """Stop and remove `container` from its engine; already gone is fine."""
    if container.docker_id:
        remove_by_id(container.host, container.docker_id)


def remove_by_id(host: DockerHost, docker_id: str) -> None:
    """Stop and remove the container `docker_id` of `host` (volumes too); already gone is fine.

    Stopped first so ComfyUI gets SIGTERM and a moment; `force` then kills what
    did not stop.
    """
    with _engine(host, CALL_TIMEOUT) as client:
        with contextlib.suppress(docker.errors.NotFound):
            client.api.stop(docker_id, timeout=STOP_SECONDS)
        with contextlib.suppress(docker.errors.NotFound):
            client.api.remove_container(docker_id, v=True, force=True)


def labelled(host: DockerHost) -> list[Observed]:
    """Every container of this deployment on `host`, whatever its state."""
    selector = {"label": f"{DEPLOYMENT_LABEL}={deployment_id()}"}
    with _engine(host) as client:
        # ignore_removed: one removed between the listing and its inspect is not an error.
        found = client.containers.list(all=True, filters=selector, ignore_removed=True)
    return [_observed(item.attrs) for item in found]


@contextlib.contextmanager
def _engine(host: DockerHost, timeout: float = CHECK_TIMEOUT) -> Iterator[docker.DockerClient]:
    """A client of `host`'s engine, closed afterwards; its failures become EngineError."""
    try:
        client = client_for(host, timeout)
    except UNREACHABLE as exc:
        raise EngineError(f"Docker host {host.name} does not answer: {describe(exc)}") from exc
    try:
        yield client
    except UNREACHABLE as exc:
        raise EngineError(f"Docker host {host.name}: {describe(exc)}") from exc
    finally:
        client.close()


def _observed(attrs: dict[str, Any]) -> Observed:
    state = attrs.get("State") or {}
    running = bool(state.get("Running"))
    status = str(state.get("Status") or "")
    # A container never started says ExitCode 0: that is no exit.
    exited = not running and status != "created"
    return Observed(
        docker_id=attrs["Id"],
        name=str(attrs.get("Name") or "").lstrip("/"),
        running=running,
        status=status,
        exit_code=state.get("ExitCode") if exited else None,
        labels=dict((attrs.get("Config") or {}).get("Labels") or {}),
        oom_killed=bool(state.get("OOMKilled")),
        error=str(state.get("Error") or ""),
    )


def _name(container: Container) -> str:
    # For people reading `docker ps`; Docker allows [a-zA-Z0-9][a-zA-Z0-9_.-]* only.
    deployment = re.sub(r"[^a-zA-Z0-9_.-]", "-", deployment_id())
    return f"comfyweb-{deployment}-{container.pk}"


def _int_label(labels: dict[str, str], key: str) -> int | None:
    value = labels.get(key, "")
    return int(value) if value.isdecimal() else None
