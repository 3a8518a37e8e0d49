"""The container scheduler: one pass over every pool, run by the worker (`servers.jobs`).

A pass (`tend`) checks the hosts that are due, moves every container one step
(`servers.containers.lifecycle`), remembers what its servers can run, decides
each pool's size (`servers.containers.autoscale`) and starts or drains
containers to match, recording the decision when it changes.

Start-up (A7) is `adopt()`, run by the first job after the worker starts and
then once a minute: every host is
checked, then what its engine runs with this deployment's label is matched
against the rows. A container a row knows is kept (the pass goes on watching
it), one no row knows is a leftover and is removed, and a row whose container is
gone lets go of it. Containers are found by label, never by name, and only this
deployment's label is looked at, so nothing else on a shared host is touched.

The job is `servers.jobs.tend_pools`: a one-minute schedule and wake-ups (work
submitted, a container's prompt ending, staff actions, the worker starting). One
pass runs at a time (a lock in the cache); a wake-up that finds one running asks
it for another. While containers start or stop, each job makes one pass and
queues the next half a second later: Docker and a starting ComfyUI tell nobody
when they are ready, so they are polled, and other jobs run in between.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from datetime import datetime, timedelta

from django.core.cache import cache
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from comfyweb.signals import containers_changed
from servers.containers import autoscale, engines, lifecycle
from servers.containers.engines import check_host
from servers.containers.models import (
    Container,
    ContainerPool,
    ContainerState,
    DockerHost,
    HostStatus,
    ScalingDecision,
)
from servers.containers.placement import NoPlacement, reserve
from servers.models import ServerState
from servers.monitor.work import new_hooks
from servers.requirements import Requirements

logger = logging.getLogger("servers.containers")

JOB = "servers.jobs.tend_pools"
HOST_CHECK_EVERY = timedelta(seconds=30)
DECISIONS_KEPT = 50  # per pool
POLL_EVERY = 0.5  # seconds between passes while containers start or stop
# A scale-down (or the end of a crash backoff) due this soon is waited for pass by
# pass; a later one by the one-minute schedule.
LOOKAHEAD = timedelta(seconds=5)
ADOPT_EVERY = 60  # seconds: engines and rows are matched by label this often, and at start

LOCK_KEY = "servers:tend-lock"
LOCK_TTL = 120  # seconds: longer than one job; a killed job's lock expires
WAKE_KEY = "servers:tend-wake"
WAKE_TTL = 30
RERUN_KEY = "servers:tend-rerun"
ADOPTED_KEY = "servers:tend-adopted"


def wake() -> None:
    """Queue a pass unless one is queued already. Cheap, never raises; call after
    submitting work, changing a pool or a staff action."""
    from django_q.tasks import async_task  # looked up per call: tests replace it

    try:
        if not ContainerPool.objects.exists():
            return
        cache.set(RERUN_KEY, 1, timeout=WAKE_TTL)  # a running job does one more pass
        if cache.add(WAKE_KEY, 1, timeout=WAKE_TTL):
            async_task(JOB, group="pools")
    except Exception:  # the broker and cache are Redis: the schedule catches up
        logger.warning("pool wake-up not queued", exc_info=True)


def cluster_started(**_: object) -> None:
    """The worker (re)started (`comfyweb.signals.cluster_started`): adopt at once (A7)."""
    cache.delete(WAKE_KEY)  # a wake-up queued before a killed cluster went with it
    cache.delete(ADOPTED_KEY)
    wake()


def run_job() -> str:
    """The job: one pass (after adopting, once a minute); queues the next while busy."""
    cache.delete(WAKE_KEY)
    if not cache.add(LOCK_KEY, 1, timeout=LOCK_TTL):
        return "another pass is running; it passes again"
    try:
        if cache.add(ADOPTED_KEY, 1, timeout=ADOPT_EVERY):
            adopt()
        cache.delete(RERUN_KEY)
        busy = tend()
    finally:
        cache.delete(LOCK_KEY)
    if not busy and not cache.get(RERUN_KEY):
        return "settled"
    # One pass per job, paced: with one worker process, dispatch and output jobs
    # queued meanwhile run between two passes instead of waiting for a long loop.
    time.sleep(POLL_EVERY)
    wake()
    return "in transition: next pass queued"


def slot_freed(server_id: int) -> None:
    """A prompt left a server: if it is a container's, it may be idle now (scale-down)."""
    try:
        if Container.objects.holding().filter(server_id=server_id).exists():
            wake()
    except Exception:  # called after a task's change was committed: never into the caller
        logger.warning("pool wake-up on a freed slot failed", exc_info=True)


def adopt() -> None:
    """Make every reachable engine and the rows agree, by this deployment's label."""
    for host in DockerHost.objects.all():
        check_host(host)
    for host in DockerHost.objects.filter(status=HostStatus.OK):
        try:
            seen = engines.labelled(host)
        except engines.EngineError as error:
            logger.warning("containers on %s not listed: %s", host, error)
            continue
        _adopt_on(host, seen)


def _adopt_on(host: DockerHost, seen: list[engines.Observed]) -> None:
    rows = list(Container.objects.holding().filter(host=host).select_related("pool", "host"))
    by_docker_id = {row.docker_id: row for row in rows if row.docker_id}
    # A row whose create went through but whose id was never saved (the worker died
    # in between) is found by the row id in the container's label.
    unsaved = {row.pk: row for row in rows if not row.docker_id}
    for observed in seen:
        row = by_docker_id.get(observed.docker_id)
        if row is None and observed.container_row_id in unsaved:
            row = unsaved.pop(observed.container_row_id)
            Container.objects.filter(pk=row.pk).update(docker_id=observed.docker_id)
            row.docker_id = observed.docker_id
            by_docker_id[row.docker_id] = row
        if row is None:
            logger.info("removing leftover container %s on %s", observed.docker_id[:12], host)
            try:
                engines.remove_by_id(host, observed.docker_id)
            except engines.EngineError as error:
                logger.warning("leftover %s not removed: %s", observed.docker_id[:12], error)
    present = {observed.docker_id for observed in seen}
    for docker_id, row in by_docker_id.items():
        if docker_id not in present:
            # Removed outside ComfyWeb, or the engine lost it (restarted with its data).
            lifecycle.fail(row, f"the container is gone from {host}", crash=False)


def tend(now: datetime | None = None) -> bool:
    """One pass over every pool; True while something is in transition."""
    now = now or timezone.now()
    _check_due_hosts(now)
    hooks = new_hooks()
    work, collecting = hooks.pending_work(), hooks.collecting_by_server()
    busy = False
    for pool in ContainerPool.objects.all():
        busy |= tend_pool(pool, work, now, collecting)
    return busy


def _check_due_hosts(now: datetime) -> None:
    due = DockerHost.objects.filter(
        Q(checked_at__isnull=True) | Q(checked_at__lte=now - HOST_CHECK_EVERY)
    )
    for host in due:
        check_host(host)


def tend_pool(
    pool: ContainerPool,
    work: list[tuple[Requirements, int]],
    now: datetime,
    collecting: Mapping[int, int] | None = None,
) -> bool:
    """Move the pool's containers along, then size it; True while it is in transition.

    `collecting`: server id -> tasks whose prompt is done there but whose outputs
    are still being fetched; such a container is busy (removing it would lose them).
    """
    containers = {container.pk: container for container in _holding(pool)}
    views = [_step(container, now, collecting or {}) for container in containers.values()]
    _remember_catalogue(pool)
    views = [view for view in views if view is not None]
    pending = autoscale.pending_for(work, pool.node_classes, pool.model_files)
    decision = autoscale.decide(_pool_view(pool), views, pending, now)
    started, no_room = _start(pool, decision.start)
    for container_id in decision.drain:
        lifecycle.drain(containers[container_id], f"scaled down: {decision.reason}", now)
    # What was done, not what was wanted: a start the hosts had no room for is a reason.
    _record(pool, dataclasses.replace(decision, start=started), no_room, now)
    if pool.delete_requested_at and not pool.containers.holding().exists():
        logger.info("pool %s deleted: its containers are gone", pool.name)
        pool.delete()
        containers_changed.send_robust(sender=ContainerPool)
        return False
    if started or decision.drain or any(view.state != "running" for view in views):
        containers_changed.send_robust(sender=ContainerPool)
    return _in_transition(pool, views, decision, started, no_room, now)


def _holding(pool: ContainerPool) -> list[Container]:
    # Each server's state comes along: its in-flight count and health, read once a pass.
    containers = list(pool.containers.holding().select_related("host", "server__state"))
    for container in containers:
        container.pool = pool  # one instance: a crash's backoff is seen by this pass's decision
    return containers


def _step(
    container: Container, now: datetime, collecting: Mapping[int, int]
) -> autoscale.ContainerView | None:
    """Move one container along; its view for the decision, None once it is gone."""
    state = container.state
    server_state = _server_state(container)
    inflight = server_state.inflight if server_state else 0
    inflight += collecting.get(container.server_id, 0) if container.server_id else 0
    if state == ContainerState.STARTING:
        if not container.docker_id:
            started = lifecycle.start(container)
            state = ContainerState.STARTING if started else ContainerState.ERROR
        else:
            state = lifecycle.watch_starting(container, now)
    elif state == ContainerState.RUNNING:
        if lifecycle.check_running(container, server_state and server_state.health):
            _track_idle(container, inflight, now)
        else:
            state = ContainerState.ERROR
    elif state == ContainerState.STOPPING:
        if lifecycle.finish_draining(container, inflight):
            return None
    elif state == ContainerState.ERROR and lifecycle.remove(container):
        return None  # its engine answers again: what it held is free now
    if state == ContainerState.ERROR:
        return None  # failed: no longer counts toward the pool's size
    return autoscale.ContainerView(
        id=container.pk, state=state, inflight=inflight, idle_since=container.idle_since
    )


def _server_state(container: Container) -> ServerState | None:
    """What the monitor last saw of the container's server (None before it is one)."""
    server = container.server
    return getattr(server, "state", None) if server is not None else None


def _track_idle(container: Container, inflight: int, now: datetime) -> None:
    idle_since = None if inflight else (container.idle_since or now)
    if idle_since != container.idle_since:
        Container.objects.filter(pk=container.pk).update(idle_since=idle_since)
        container.idle_since = idle_since


def _remember_catalogue(pool: ContainerPool) -> None:
    """Keep what the pool's newest reporting server can run, for when it has none."""
    state = (
        ServerState.objects.filter(server__container__pool=pool, capabilities_at__isnull=False)
        .order_by("-capabilities_at")
        .values("node_classes", "model_files", "capabilities_at")
        .first()
    )
    if state is None or (pool.catalogue_at and state["capabilities_at"] <= pool.catalogue_at):
        return
    pool.node_classes = list(state["node_classes"] or [])
    pool.model_files = state["model_files"] or {}
    pool.catalogue_at = state["capabilities_at"]
    ContainerPool.objects.filter(pk=pool.pk).update(
        node_classes=pool.node_classes, model_files=pool.model_files, catalogue_at=pool.catalogue_at
    )


def _pool_view(pool: ContainerPool) -> autoscale.PoolView:
    return autoscale.PoolView(
        name=pool.name,
        min_size=pool.min_size,
        max_size=pool.max_size,
        jobs_per_container=pool.jobs_per_container,
        idle_seconds=pool.idle_seconds,
        enabled=pool.enabled,
        pinned_size=pool.pinned_size,
        deleting=pool.delete_requested_at is not None,
        backoff_until=pool.backoff_until,
        failures_in_row=pool.failures_in_row,
    )


def _start(pool: ContainerPool, count: int) -> tuple[int, str]:
    """Place and create `count` containers; how many started, and why no more could."""
    started = 0
    for _ in range(count):
        try:
            container = reserve(pool)
        except NoPlacement as no_room:
            return started, str(no_room)
        if lifecycle.start(container):
            started += 1
        else:
            break  # the engine refused (an image missing): the crash backoff decides when next
    return started, ""


def _record(pool: ContainerPool, decision: autoscale.Decision, no_room: str, now: datetime) -> None:
    reason = f"{decision.reason}; {no_room}" if no_room else decision.reason
    changed = decision.desired != pool.desired_size or decision.action != "hold"
    with transaction.atomic():
        ContainerPool.objects.filter(pk=pool.pk).update(
            desired_size=decision.desired, decision=reason, decided_at=now
        )
        if changed or not pool.decisions.exists():
            ScalingDecision.objects.create(
                pool=pool,
                at=now,
                desired=decision.desired,
                live=decision.live,
                work=decision.work,
                action=decision.action,
                reason=reason,
            )
            old = pool.decisions.order_by("-at", "-pk").values_list("pk", flat=True)[
                DECISIONS_KEPT:
            ]
            ScalingDecision.objects.filter(pk__in=list(old)).delete()
    if changed:
        logger.info("pool %s: %s (%s)", pool.name, decision.action, reason)
    pool.desired_size, pool.decision, pool.decided_at = decision.desired, reason, now


def _in_transition(
    pool: ContainerPool,
    views: list[autoscale.ContainerView],
    decision: autoscale.Decision,
    started: int,
    no_room: str,
    now: datetime,
) -> bool:
    if started or decision.drain or any(view.state != "running" for view in views):
        return True
    live = sum(view.state in ("starting", "running") for view in views)
    if live > decision.desired:
        due = autoscale.next_idle_due(_pool_view(pool), views, now)
        return due is not None and due - now <= LOOKAHEAD
    if live < decision.desired and not no_room:
        return pool.backoff_until is not None and pool.backoff_until - now <= LOOKAHEAD
    return False
