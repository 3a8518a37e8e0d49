"""The usage page of a team: GPU time by day, workflow, server and user, CSV export."""

from __future__ import annotations

import csv

from django.core.exceptions import BadRequest
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET

from accounting import access, quotas, reports
from accounting.period import PeriodForm
from teams.models import Team

SECTIONS = ("day", "workflow", "server", "user")


@require_GET
def usage(request: HttpRequest) -> HttpResponse:
    form = PeriodForm(request.GET)
    valid = form.is_valid()
    team = access.team_or_first(request.user, form.cleaned_data.get("team") if valid else None)
    context = {"form": form, "team": team, "teams": Team.objects.for_user(request.user)}
    if valid and team is not None:
        context |= _report(team, form)
    return render(request, "accounting/usage.html", context, status=200 if valid else 400)


@require_GET
def report(request: HttpRequest) -> HttpResponse:
    """The page's report alone, fetched by live.js when a team's usage grows."""
    form, team = _asked(request)
    return HttpResponse(render_to_string("accounting/report.html", _report(team, form), request))


@require_GET
def export(request: HttpRequest) -> HttpResponse:
    form, team = _asked(request)
    period, group_by = form.cleaned_data["period"], form.cleaned_data["group_by"]
    rows = reports.totals(reports.usage_between([team.pk], period.start, period.end), group_by)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    name = f"usage-{team.slug}-{period.start}-{period.end}-by-{group_by}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    writer = csv.writer(response)
    writer.writerow([group_by, "gpu_seconds", "seconds", "tasks", "attempts"])
    for row in rows:
        writer.writerow(
            [row.key, f"{row.gpu_seconds:.3f}", f"{row.seconds:.3f}", row.tasks, row.attempts]
        )
    return response


def _asked(request: HttpRequest) -> tuple[PeriodForm, Team]:
    """The query's period and team (a 400 for a bad query, a 404 for no team of the user's)."""
    form = PeriodForm(request.GET)
    if not form.is_valid():
        raise BadRequest("Bad period or group_by.")
    team = access.team_or_first(request.user, form.cleaned_data["team"])
    if team is None:
        raise Http404("You are not in a team.")
    return form, team


def _report(team: Team, form: PeriodForm) -> dict:
    period = form.cleaned_data["period"]
    rows = reports.usage_between([team.pk], period.start, period.end)
    return {
        "team": team,
        "period": period,
        "query": f"team={team.pk}&from={period.start}&to={period.end}",
        "total": reports.grand_total(rows),
        "sections": [(name, reports.totals(rows, name)) for name in SECTIONS],
        "quota": quotas.state_of(team.pk),
    }
