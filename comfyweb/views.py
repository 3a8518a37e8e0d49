from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.forms import ApiTokenForm
from api.models import ApiToken
from comfyweb import health, health_log, metrics
from comfyweb.metrics_access import scrapers_only
from tasks import pictures, queue_panel
from teams.models import Team


@login_not_required
@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers and `serve`: open to anonymous probes.

    Anonymous callers get the verdict per component; logged-in users also get
    the details (error text, latencies), which can name internal hosts.
    """
    report = health.collect()
    body = report.as_json()
    if not request.user.is_authenticated:
        body["components"] = {name: {"ok": c["ok"]} for name, c in body["components"].items()}
    response = JsonResponse(body, status=200 if report.ok else 503)
    health_log.warm_up.record(report, response)
    return response


@login_not_required
@never_cache
@require_GET
@scrapers_only
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus scrapes: no session, a token or an allowed network instead
    (`metrics_access`); any web process gives the same figures (`metrics`)."""
    return HttpResponse(generate_latest(metrics.registry), content_type=CONTENT_TYPE_LATEST)


@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    context = queue_panel.dashboard_context(request.user)  # fleet and queue: one read
    context |= {"health": health.collect(), "teams": _teams_with_roles(request.user)}
    context |= pictures.recent_results(request.user)
    return render(request, "comfyweb/dashboard.html", context)


@require_GET
def account(request: HttpRequest) -> HttpResponse:
    return render_account(request)


def render_account(
    request: HttpRequest,
    *,
    token_form: ApiTokenForm | None = None,
    issued: tuple[ApiToken, str] | None = None,
    status: int = 200,
) -> HttpResponse:
    """The account page; the token views render it too, with a form's errors or
    with a token just issued, whose clear text exists only in this one response."""
    issued_token, issued_raw = issued or (None, None)
    context = {
        "teams": _teams_with_roles(request.user),
        "tokens": request.user.api_tokens.all(),
        "token_form": token_form or ApiTokenForm(),
        "issued_token": issued_token,
        "issued_raw": issued_raw,
    }
    return render(request, "comfyweb/account.html", context, status=status)


def _teams_with_roles(user) -> list[tuple[Team, str]]:
    memberships = {m.team_id: m.get_role_display() for m in user.memberships.all()}
    return [
        (team, memberships.get(team.pk, "Staff"))
        for team in Team.objects.for_user(user).order_by("name")
    ]
