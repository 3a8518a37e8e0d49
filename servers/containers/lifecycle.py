"""A container's life (A3, A5): created, watched until ComfyUI answers, a server of
the fleet, drained, removed — or failed, with the reason.

    STARTING ──ComfyUI answers──▶ RUNNING ──drain──▶ STOPPING ──nothing in flight──▶ removed
        │                            │
        └──exited / no answer──▶ ERROR ◀──died / unhealthy──┘   (removed too; its tasks retried)

Every function here takes one container and moves it one step; the scheduler
(`servers.containers.tending`) decides which step and when. A container is
*removed* when it is gone from its engine: then, and only then, its port and GPU
ids are released (`Container.release`) and its server leaves the fleet (its row
stays, disabled, for the tasks that ran there). A container whose engine cannot
be reached keeps what it holds until the engine answers again.

Blocking (Docker SDK, ORM, `asyncio.run` for the ComfyUI look): worker only.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from comfyweb.backoff import backoff_delay
from servers.clients import client_for
from servers.comfyui import ComfyUIError, Timeouts
from servers.containers import engines
from servers.containers.models import Container, ContainerPool, ContainerState
from servers.models import Health, Server, ServerKind, ServerState
from servers.monitor.work import new_hooks

logger = logging.getLogger("servers.containers")

# ComfyUI with many custom nodes can take minutes to import them; while the
# container lives we wait this long at most before calling it stuck.
STARTUP_CAP = timedelta(seconds=getattr(settings, "COMFYWEB_CONTAINER_STARTUP_CAP", 900))
# A starting ComfyUI that accepts no connection yet is asked again on the next pass.
STARTUP_LOOK = Timeouts(connect=3.0, read=10.0, write=10.0, pool=3.0)
OBJECT_INFO_CAP = 60.0  # seconds: /object_info of a big install takes a while the first time
LOG_LINES = 30  # of a container that died, kept as its error
# Crash-loop backoff per pool: min(cap, base * 2**n) after the n-th failure in a row.
BACKOFF_BASE = 5.0
BACKOFF_CAP = 300.0


@dataclass(frozen=True)
class Endpoint:
    """Where a container's ComfyUI answers (a `servers.clients.Reachable`)."""

    base_url: str
    auth_headers: dict[str, str] | None = None


def base_url_of(container: Container) -> str:
    return f"http://{container.host.publish_address}:{container.port}"


def start(container: Container) -> bool:
    """Create the reserved container on its engine; False (and ERROR) if the engine refused."""
    try:
        docker_id = engines.create_container(container)
    except engines.EngineError as error:
        fail(container, str(error))
        return False
    container.docker_id = docker_id
    Container.objects.filter(pk=container.pk).update(docker_id=docker_id)
    logger.info("container %s created on %s: %s", container.pk, container.host, docker_id[:12])
    return True


def watch_starting(container: Container, now: datetime) -> ContainerState:
    """One look at a STARTING container: promote it, fail it, or leave it starting.

    No short deadline while it lives (a real ComfyUI imports its custom nodes for
    minutes); a container that exited fails at once with its log tail as the error.
    """
    try:
        observed = engines.inspect(container)
    except engines.EngineError as error:
        # Its host is away: the host check marks it; a container of a host that
        # never comes back still fails at the cap.
        if now - container.created_at > STARTUP_CAP:
            fail(container, f"its Docker host did not answer while it started: {error}")
            return ContainerState.ERROR
        return ContainerState.STARTING
    if observed is None:
        fail(container, f"the container is gone from {container.host} (removed outside ComfyWeb)")
    elif not observed.running:
        fail(container, _exit_reason(container, observed, "while starting"))
    elif _comfyui_answers(container):
        promote(container, now)
        return ContainerState.RUNNING
    elif now - container.created_at > STARTUP_CAP:
        fail(
            container,
            f"ComfyUI did not answer on {base_url_of(container)} within "
            f"{int(STARTUP_CAP.total_seconds())} s",
        )
    else:
        return ContainerState.STARTING
    return ContainerState.ERROR


def promote(container: Container, now: datetime) -> Server:
    """ComfyUI answers: the container becomes a server of the fleet (kind container)."""
    pool = container.pool
    with transaction.atomic():
        server = _new_server(container)
        Container.objects.filter(pk=container.pk).update(
            state=ContainerState.RUNNING, started_at=now, server=server, idle_since=now
        )
    if pool.failures_in_row:
        ContainerPool.objects.filter(pk=pool.pk).update(failures_in_row=0, backoff_until=None)
    container.state, container.started_at, container.server = ContainerState.RUNNING, now, server
    logger.info("container %s of %s is server %s", container.pk, pool.name, server.name)
    return server


def _new_server(container: Container) -> Server:
    name = f"{container.pool.name}-{container.pk}"
    for suffix in ("", *(f"-{n}" for n in range(2, 10))):
        try:
            with transaction.atomic():
                return Server.objects.create(
                    name=name + suffix,
                    base_url=base_url_of(container),
                    kind=ServerKind.CONTAINER,
                    max_inflight=container.pool.jobs_per_container,
                )
        except IntegrityError:  # a server of that name exists (added by hand): next suffix
            continue
    raise IntegrityError(f"no free server name for container {container.pk}")


def drain(container: Container, reason: str, now: datetime | None = None) -> bool:
    """No new prompts; it is removed once those it has are done (`finish_draining`).
    False if it was not starting or running (already going, or gone)."""
    now = now or timezone.now()
    updated = Container.objects.filter(
        pk=container.pk, state__in=[ContainerState.STARTING, ContainerState.RUNNING]
    ).update(state=ContainerState.STOPPING, stop_reason=reason[:200], stop_requested_at=now)
    if updated and container.server_id:
        Server.objects.filter(pk=container.server_id).update(draining=True)
    if updated:
        logger.info("container %s draining: %s", container.pk, reason)
    return bool(updated)


def finish_draining(container: Container, inflight: int) -> bool:
    """Remove a STOPPING container whose prompts are done; True once it is gone."""
    if inflight:
        return False
    return remove(container)


def fail(container: Container, reason: str, *, crash: bool = True) -> None:
    """It died, never came up, or staff removed it now: ERROR, out of the fleet, its
    prompts retried elsewhere, removed from its engine. `crash` counts it toward the
    pool's crash-loop backoff."""
    now = timezone.now()
    Container.objects.filter(pk=container.pk).update(state=ContainerState.ERROR, error=reason)
    container.state, container.error = ContainerState.ERROR, reason
    logger.warning("container %s of %s failed: %s", container.pk, container.pool.name, reason)
    if container.server_id:
        _lose_server(container.server_id, now)
    if crash:
        _back_off(container.pool, now)
    remove(container)


def _lose_server(server_id: int, now: datetime) -> None:
    """Its ComfyUI is gone for good: what it had is lost, so reconcile retries it.

    Marked unhealthy here rather than by the monitor (which only writes what it
    sees) because nobody will see this server again: reconciliation retries the
    prompts of an unhealthy server that does not answer.
    """
    Server.objects.filter(pk=server_id).update(enabled=False, draining=False)
    ServerState.objects.filter(server_id=server_id).exclude(health=Health.UNHEALTHY).update(
        health=Health.UNHEALTHY, unhealthy_since=now
    )
    new_hooks().server_needs_reconcile(server_id)


def _back_off(pool: ContainerPool, now: datetime) -> None:
    failures = ContainerPool.objects.get(pk=pool.pk).failures_in_row + 1
    delay = backoff_delay(failures - 1, base=BACKOFF_BASE, cap=BACKOFF_CAP, jitter=0)
    ContainerPool.objects.filter(pk=pool.pk).update(
        failures_in_row=failures, backoff_until=now + timedelta(seconds=delay)
    )
    pool.failures_in_row, pool.backoff_until = failures, now + timedelta(seconds=delay)


def remove(container: Container) -> bool:
    """Remove it from its engine and release what it held; False if the engine is away."""
    try:
        if container.docker_id:
            engines.remove(container)
    except engines.EngineError as error:
        logger.warning("container %s not removed yet: %s", container.pk, error)
        return False
    container.release()
    if container.server_id:
        Server.objects.filter(pk=container.server_id).update(enabled=False, draining=False)
    logger.info("container %s removed from %s", container.pk, container.host)
    return True


def check_running(container: Container, health: str | None) -> bool:
    """A RUNNING container still serves: alive on its engine and its server not marked
    unhealthy by the monitor. Otherwise it fails (and is re-created by the scheduler)."""
    try:
        observed = engines.inspect(container)
    except engines.EngineError:
        return True  # its host is away: the host check says so; nothing to decide here
    if observed is None:
        fail(container, f"the container is gone from {container.host} (removed outside ComfyWeb)")
    elif not observed.running:
        fail(container, _exit_reason(container, observed, "while serving"))
    elif health == Health.UNHEALTHY:
        fail(container, "its ComfyUI stopped answering (marked unhealthy by the monitor)")
    else:
        return True
    return False


def _exit_reason(container: Container, observed: engines.Observed, when: str) -> str:
    code = "" if observed.exit_code is None else f" with code {observed.exit_code}"
    head = f"the container exited{code} {when} ({observed.status})"
    try:
        tail = engines.logs_tail(container, LOG_LINES)
    except engines.EngineError:
        tail = ""
    return f"{head}; its last log lines:\n{tail}" if tail.strip() else head


def _comfyui_answers(container: Container) -> bool:
    """ComfyUI is up once it answers /system_stats and /object_info (its nodes are loaded)."""

    async def look() -> None:
        async with client_for(Endpoint(base_url_of(container)), "check") as client:
            await client.system_stats(timeouts=STARTUP_LOOK)
            await client.object_info()

    try:
        asyncio.run(asyncio.wait_for(look(), OBJECT_INFO_CAP))
    except (ComfyUIError, TimeoutError, OSError):
        return False
    return True


# Staff and API requests: they only write what the scheduler should do and wake it
# (`servers.containers.tending.wake`); Docker is called by the worker, never by a request.


def pin_size(pool: ContainerPool, size: int | None) -> None:
    """Keep the pool at `size` containers (within its maximum) until unpinned (None)."""
    ContainerPool.objects.filter(pk=pool.pk).update(pinned_size=size)
    pool.pinned_size = size


def request_delete(pool: ContainerPool) -> bool:
    """Drain and remove the pool's containers, then the pool; True if it went at once
    (it held none)."""
    with transaction.atomic():
        if not Container.objects.holding().filter(pool=pool).exists():
            pool.delete()
            return True
        # Asked again: the first request's time stands.
        ContainerPool.objects.filter(pk=pool.pk, delete_requested_at__isnull=True).update(
            enabled=False, delete_requested_at=timezone.now()
        )
    return False


def remove_now(container_id: int, reason: str) -> bool:
    """Take the container out at once (its prompts are retried elsewhere) and remove it;
    False if it was already gone. Run by the worker (`servers.jobs.remove_container`)."""
    container = (
        Container.objects.holding().select_related("pool", "host").filter(pk=container_id).first()
    )
    if container is None:
        return False
    if container.state == ContainerState.ERROR:
        remove(container)  # failed already: keep the error (its log tail) it failed with
    else:
        fail(container, reason, crash=False)
    return True
