from __future__ import annotations

from asgiref.sync import async_to_sync
from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from servers import status_panel
from servers.containers import panel as container_panel
from servers.local import panel as local_panel
from servers.models import BalancerDecision, FleetSettings, Server, ServerKind
from servers.probe import probe
from servers.simulator.control import ControlError, simulate_outage


@require_GET
def server_list(request: HttpRequest) -> HttpResponse:
    context = status_panel.table_context()
    context["decisions"] = BalancerDecision.objects.select_related("chosen")[:20]
    context |= container_panel.section_context(request.user)
    if request.user.is_staff:
        context |= local_panel.list_context()
    return render(request, "servers/list.html", context)


@require_GET
def server_detail(request: HttpRequest, pk: int) -> HttpResponse:
    server = get_object_or_404(status_panel.servers_with_state(), pk=pk)
    context = status_panel.table_context([server]) | {
        "server": server,
        "failures": server.failures.all()[:50],
        "decisions": server.decisions.all()[:20],
        "speeds": server.speeds.all()[:20],
        "model_folders": sorted((k, v) for k, v in server.state.model_files.items() if v),
        "cache": server.state.event_stats.get("capabilities", {}),
        "event_counts": sorted(server.state.event_stats.get("by_type", {}).items()),
    }
    return render(request, "servers/detail.html", context)


@staff_member_required
@require_POST
def server_test(request: HttpRequest, pk: int) -> HttpResponse:
    """Run a health + queue check now (B8) and report it as a message."""
    server = get_object_or_404(Server, pk=pk)
    result = async_to_sync(probe)(server, FleetSettings.load())
    if not result.ok:
        messages.error(request, f"{server.name}: unreachable — {result.error}")
    elif result.error:
        messages.warning(
            request, f"{server.name}: answers in {result.response_ms:.0f} ms, but {result.error}"
        )
    else:
        messages.success(
            request,
            f"{server.name}: healthy, {result.response_ms:.0f} ms, queue "
            f"{result.queue_running} running / {result.queue_pending} pending",
        )
    return redirect(request.POST.get("next") or "servers:detail", pk=pk)


OUTAGE_SECONDS = 30


@staff_member_required
@require_POST
def server_outage(request: HttpRequest, pk: int) -> HttpResponse:
    """Demo only: take a simulated server down for a while to watch failover."""
    server = get_object_or_404(Server, pk=pk, kind=ServerKind.SIMULATED)
    try:
        async_to_sync(simulate_outage)(server.base_url, OUTAGE_SECONDS)
    except ControlError as error:
        messages.error(request, f"{server.name}: could not start an outage — {error}")
    else:
        messages.info(
            request, f"{server.name} is down for {OUTAGE_SECONDS} s; watch it fail over and return."
        )
    return redirect("servers:detail", pk=pk)
