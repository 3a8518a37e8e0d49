"""Queue controls (S7): pause, resume and clear, for everyone (staff) or one team."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_GET, require_POST

from tasks import queue, queue_panel
from tasks.models import Team


@require_GET
def panel(request: HttpRequest) -> HttpResponse:
    """The dashboard panel alone, fetched by live.js after a refresh hint."""
    return HttpResponse(queue_panel.render(request.user))


@require_POST
def pause(request: HttpRequest) -> HttpResponse:
    team = _team_to_control(request)
    queue.pause(team=team, by=request.user)
    messages.success(request, f"Queue paused for {team or 'everyone'}.")
    return redirect("dashboard")


@require_POST
def resume(request: HttpRequest) -> HttpResponse:
    team = _team_to_control(request)
    queue.resume(team=team)
    messages.success(request, f"Queue resumed for {team or 'everyone'}.")
    return redirect("dashboard")


@require_POST
def clear(request: HttpRequest) -> HttpResponse:
    team = _team_to_control(request)
    canceled = queue.clear(team=team, by=request.user)
    messages.success(request, f"Canceled {canceled} pending task(s) of {team or 'every team'}.")
    return redirect("dashboard")


def _team_to_control(request: HttpRequest) -> Team | None:
    """No team: the whole queue (staff only). A team: its admins (and staff)."""
    team_id = request.POST.get("team")
    if not team_id:
        if not request.user.is_staff:
            raise PermissionDenied("Only staff control the whole queue.")
        return None
    team = (
        Team.objects.for_user(request.user).filter(pk=team_id).first()
        if team_id.isdigit()
        else None
    )
    if team is None:
        raise Http404("No such team.")
    if not team.can_manage(request.user):
        raise PermissionDenied("Only the team's admins control its queue.")
    return team
