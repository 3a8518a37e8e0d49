"""Queue controls (S7): pause, resume and clear, for everyone (staff) or one team."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_GET, require_POST

from tasks import access, queue, queue_panel


@require_GET
def panel(request: HttpRequest) -> HttpResponse:
    """The queue panel and the fleet panel, fetched by live.js after a refresh hint:
    rendered from one read of the counts, swapped in together."""
    return HttpResponse("\n".join(html for _, html in queue_panel.render_panels(request.user)))


@require_POST
def pause(request: HttpRequest) -> HttpResponse:
    team = access.queue_scope_for(request.user, request.POST.get("team"))
    queue.pause(team=team, by=request.user)
    messages.success(request, f"Queue paused for {team or 'everyone'}.")
    return redirect("dashboard")


@require_POST
def resume(request: HttpRequest) -> HttpResponse:
    team = access.queue_scope_for(request.user, request.POST.get("team"))
    queue.resume(team=team)
    messages.success(request, f"Queue resumed for {team or 'everyone'}.")
    return redirect("dashboard")


@require_POST
def clear(request: HttpRequest) -> HttpResponse:
    team = access.queue_scope_for(request.user, request.POST.get("team"))
    canceled = queue.clear(team=team, by=request.user)
    messages.success(request, f"Canceled {canceled} pending task(s) of {team or 'every team'}.")
    return redirect("dashboard")
