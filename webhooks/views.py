"""The team webhooks pages: endpoints (add with the secret shown once, enable, disable,
delete), the per-submission secret, and the delivery log with redeliver.

Everyone in a team reads its webhooks (the secrets never: only once, to the admin who
made them); the team's admins change them; staff act as admins everywhere.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from teams.models import Role, Team
from webhooks import delivery, endpoints
from webhooks.forms import EndpointForm
from webhooks.models import Delivery, Endpoint, SubmissionSecret

LOG_SHOWN = 50


@require_http_methods(["GET", "HEAD", "POST"])
def webhook_list(request: HttpRequest) -> HttpResponse:
    managed = _managed_teams(request.user)
    form = EndpointForm(teams=managed) if managed.exists() else None
    shown_secret = None
    if request.method == "POST":
        if form is None:
            raise PermissionDenied("Only a team's admins add webhooks.")
        form = EndpointForm(request.POST, teams=managed)
        if form.is_valid():
            data = form.cleaned_data
            made = endpoints.create_endpoint(
                data["team"],
                request.user,
                url=data["url"],
                events=data["events"],
                description=data["description"],
            )
            shown_secret = (made, made.secret)
            form = EndpointForm(teams=managed)
    return render(request, "webhooks/list.html", _list_context(request, form, shown_secret))


@require_GET
def list_panel(request: HttpRequest) -> HttpResponse:
    """The live delivery log of the list page (per-submission deliveries), refetched."""
    team = _team_param(request)
    deliveries = _deliveries(request.user).filter(endpoint=None)
    if team is not None:
        deliveries = deliveries.filter(team=team)
    context = {"deliveries": deliveries[:LOG_SHOWN], "team": team, "user": request.user}
    return render(request, "webhooks/log.html", context)


@require_GET
def endpoint_detail(request: HttpRequest, pk: int) -> HttpResponse:
    endpoint = _endpoint(request, pk)
    context = _endpoint_context(request, endpoint)
    return render(request, "webhooks/endpoint.html", context)


@require_GET
def endpoint_panel(request: HttpRequest, pk: int) -> HttpResponse:
    endpoint = _endpoint(request, pk)
    return render(request, "webhooks/log.html", _endpoint_context(request, endpoint))


@require_POST
def endpoint_toggle(request: HttpRequest, pk: int) -> HttpResponse:
    endpoint = _endpoint(request, pk)
    endpoints.set_enabled(endpoint, request.user, not endpoint.enabled)
    messages.success(request, f"{endpoint.url}: {'enabled' if endpoint.enabled else 'disabled'}.")
    return redirect("webhooks:endpoint", pk=endpoint.pk)


@require_POST
def endpoint_delete(request: HttpRequest, pk: int) -> HttpResponse:
    endpoint = _endpoint(request, pk)
    endpoints.delete_endpoint(endpoint, request.user)
    messages.success(request, f"{endpoint.url}: deleted.")
    return redirect("webhooks:list")


@require_POST
def submission_secret(request: HttpRequest) -> HttpResponse:
    team = _team_param(request, source=request.POST)
    if team is None:
        raise PermissionDenied("Name a team of yours.")
    secret = endpoints.rotate_submission_secret(team, request.user)
    managed = Team.objects.filter(pk=team.pk)
    context = _list_context(request, EndpointForm(teams=managed), None)
    context["shown_submission_secret"] = (team, secret)
    return render(request, "webhooks/list.html", context)


@require_POST
def redeliver(request: HttpRequest, pk: int) -> HttpResponse:
    found = get_object_or_404(_deliveries(request.user), pk=pk)
    endpoints.require_manager(found.team, request.user)
    delivery.redeliver(found)
    messages.success(request, f"{found.message_id}: queued again.")
    if found.endpoint_id:
        return redirect("webhooks:endpoint", pk=found.endpoint_id)
    return redirect("webhooks:list")


def _list_context(request, form, shown_secret) -> dict:
    teams = Team.objects.for_user(request.user)
    rows = Endpoint.objects.filter(team__in=teams).select_related("team")
    return {
        "endpoints": rows,
        "form": form,
        "shown_secret": shown_secret,
        "teams": [(t, t.can_manage(request.user)) for t in teams],
        "secret_teams": set(
            SubmissionSecret.objects.filter(team__in=teams).values_list("team_id", flat=True)
        ),
        "deliveries": _deliveries(request.user).filter(endpoint=None)[:LOG_SHOWN],
        "live_teams": [t.pk for t in teams][:20],
    }


def _endpoint_context(request, endpoint: Endpoint) -> dict:
    return {
        "endpoint": endpoint,
        "can_manage": endpoint.team.can_manage(request.user),
        "deliveries": endpoint.deliveries.prefetch_related("attempt_log")[:LOG_SHOWN],
        "team": endpoint.team,
        "user": request.user,
    }


def _endpoint(request, pk: int) -> Endpoint:
    return get_object_or_404(Endpoint.objects.for_user(request.user).select_related("team"), pk=pk)


def _deliveries(user):
    return Delivery.objects.for_user(user).select_related("team").prefetch_related("attempt_log")


def _team_param(request, source=None) -> Team | None:
    value = (source or request.GET).get("team", "")
    if not value.isdigit():
        return None
    return get_object_or_404(Team.objects.for_user(request.user), pk=value)


def _managed_teams(user):
    teams = Team.objects.for_user(user)
    return teams if user.is_staff else teams.filter(memberships__role=Role.ADMIN)
