"""A pool's page, the live panels' partials, and staff actions on pools and containers.

The actions only write what the scheduler should do (`servers.containers.lifecycle`)
and wake it (`tending.wake`); Docker is called by the worker, never by a request.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from servers.containers import lifecycle, panel, tending
from servers.containers.models import Container, ContainerPool, ContainerState

REMOVE_JOB = "servers.jobs.remove_container"


@require_GET
def pool_detail(request: HttpRequest, pk: int) -> HttpResponse:
    pool = get_object_or_404(ContainerPool.objects.prefetch_related("hosts"), pk=pk)
    return render(request, "servers/pool.html", panel.page_context(pool, request.user))


@require_GET
def containers_panel(request: HttpRequest) -> HttpResponse:
    """The Servers page's Containers section, fetched by live.js after a refresh hint."""
    return HttpResponse(panel.render_section(request.user))


@require_GET
def pool_panel(request: HttpRequest, pk: int) -> HttpResponse:
    pool = get_object_or_404(ContainerPool, pk=pk)
    return HttpResponse(panel.render_pool(pool.pk, request.user))


@staff_member_required
@require_POST
def pool_scale(request: HttpRequest, pk: int) -> HttpResponse:
    """Pin the pool to N containers (0..its maximum) until someone unpins it."""
    pool = get_object_or_404(ContainerPool, pk=pk)
    size = request.POST.get("size", "")
    if not size.isdigit() or int(size) > pool.max_size:
        messages.error(request, f"{pool.name}: a size is a whole number, 0 to {pool.max_size}.")
        return _back(request, pool.pk)
    lifecycle.pin_size(pool, int(size))
    _changed()
    messages.success(request, f"{pool.name}: scaling to {size}; kept there until Autoscale.")
    return _back(request, pool.pk)


@staff_member_required
@require_POST
def pool_autoscale(request: HttpRequest, pk: int) -> HttpResponse:
    pool = get_object_or_404(ContainerPool, pk=pk)
    lifecycle.pin_size(pool, None)
    _changed()
    messages.success(request, f"{pool.name}: sized by its queue again.")
    return _back(request, pool.pk)


@staff_member_required
@require_POST
def container_drain(request: HttpRequest, pk: int) -> HttpResponse:
    return _drain(request, pk, f"drained by {request.user}", "draining: removed once idle")


@staff_member_required
@require_POST
def container_recreate(request: HttpRequest, pk: int) -> HttpResponse:
    # The pool's live count drops, so the scheduler starts its replacement.
    return _drain(request, pk, f"re-created by {request.user}", "draining; a new one starts")


def _drain(request: HttpRequest, pk: int, reason: str, said: str) -> HttpResponse:
    container = get_object_or_404(Container.objects.select_related("pool", "host"), pk=pk)
    if container.stopped_at is not None or container.state not in panel.LIVE_STATES:
        messages.warning(request, f"{_name(container)} {_not_live(container)}.")
        return _back(request, container.pool_id)
    lifecycle.drain(container, reason)
    _changed()
    messages.success(request, f"{_name(container)}: {said}.")
    return _back(request, container.pool_id)


@staff_member_required
@require_POST
def container_remove(request: HttpRequest, pk: int) -> HttpResponse:
    """Out of the fleet at once (its prompts are retried elsewhere), by the worker."""
    from django_q.tasks import async_task  # looked up per call: tests replace it

    container = get_object_or_404(Container.objects.select_related("pool", "host"), pk=pk)
    if container.stopped_at is not None:
        messages.warning(request, f"{_name(container)} is already removed.")
        return _back(request, container.pool_id)
    async_task(REMOVE_JOB, container.pk, f"removed by {request.user}")
    _changed()
    messages.success(request, f"{_name(container)}: being removed.")
    return _back(request, container.pool_id)


def _name(container: Container) -> str:
    return f"Container {container.host.name}:{container.port} of {container.pool.name}"


def _not_live(container: Container) -> str:
    if container.stopped_at is not None:
        return "is already removed"
    if container.state == ContainerState.ERROR:
        return "has failed and is being removed"
    return "is already stopping"


def _changed() -> None:
    tending.wake()
    panel.publish_containers()


def _back(request: HttpRequest, pool_id: int) -> HttpResponse:
    """To the page the button was on (its `next`), else the pool's page."""
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return redirect(target)
    return redirect("servers:pool", pk=pool_id)
