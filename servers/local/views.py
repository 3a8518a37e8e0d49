"""A local instance's page (staff only) and its start, stop and restart buttons.

The buttons only say what staff want (`servers.local.control`) and wake the
launcher; no request spawns or signals a process. The page follows what the
launcher does through its live blocks (`servers.local.panel`).
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from servers.local import control, panel
from servers.local.models import LocalInstance


@staff_member_required
@require_GET
def instance_page(request: HttpRequest, pk: int) -> HttpResponse:
    instance = get_object_or_404(LocalInstance.objects.select_related("server"), pk=pk)
    return render(request, "servers/local_instance.html", panel.page_context(instance))


@staff_member_required
@require_POST
def instance_start(request: HttpRequest, pk: int) -> HttpResponse:
    return _ask(request, pk, control.request_start, "Starting")


@staff_member_required
@require_POST
def instance_stop(request: HttpRequest, pk: int) -> HttpResponse:
    return _ask(request, pk, control.request_stop, "Stopping")


@staff_member_required
@require_POST
def instance_restart(request: HttpRequest, pk: int) -> HttpResponse:
    return _ask(request, pk, control.request_restart, "Restarting")


def _ask(
    request: HttpRequest, pk: int, ask: Callable[[LocalInstance], None], said: str
) -> HttpResponse:
    instance = get_object_or_404(LocalInstance, pk=pk)
    ask(instance)
    messages.success(request, f"{said} {instance.name}: the launcher acts on it at once.")
    return redirect("servers:local", pk=instance.pk)
