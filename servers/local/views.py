"""Local instances' pages (staff only): add, change and remove one, its page, and
its start, stop and restart buttons. The list is a section of the Servers page.

The buttons only say what staff want (`servers.local.control`) and wake the
launcher; no request spawns or signals a process. The pages follow what the
launcher does through their live blocks (`servers.local.panel`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from servers.local import control, panel
from servers.local.forms import LocalInstanceForm
from servers.local.models import CONFIGURATION_FIELDS, LocalInstance


@staff_member_required
def instance_add(request: HttpRequest) -> HttpResponse:
    form = LocalInstanceForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        instance = form.save()
        messages.success(request, f"Added {instance.name}: start it when you are ready.")
        return redirect("servers:local", pk=instance.pk)
    context = {"form": form, "instance": None, "stand_in": _stand_in()}
    return render(request, "servers/local_form.html", context)


def _stand_in() -> dict[str, str]:
    """The simulator's ComfyUI-like install (servers/simulator/comfyui), for trying it out."""
    return {
        "directory": str(Path(settings.BASE_DIR) / "servers" / "simulator" / "comfyui"),
        "python": sys.executable,
    }


@staff_member_required
def instance_edit(request: HttpRequest, pk: int) -> HttpResponse:
    instance = get_object_or_404(LocalInstance, pk=pk)
    form = LocalInstanceForm(request.POST or None, instance=instance)
    if request.method == "POST" and form.is_valid():
        # Only the configuration: the launcher may be writing its state right now.
        form.instance.save(update_fields=CONFIGURATION_FIELDS)
        said = " It applies at the next start: restart it." if instance.pid else ""
        messages.success(request, f"Saved {instance.name}.{said}")
        return redirect("servers:local", pk=instance.pk)
    return render(request, "servers/local_form.html", {"form": form, "instance": instance})


@staff_member_required
@require_POST
def instance_delete(request: HttpRequest, pk: int) -> HttpResponse:
    instance = get_object_or_404(LocalInstance, pk=pk)
    control.delete_instance(instance)
    messages.success(request, f"Removed {instance.name}; the launcher stops its process.")
    return redirect("servers:list")


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
