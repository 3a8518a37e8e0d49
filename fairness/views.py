"""The team's limits page: every member reads them and what runs and waits against
them; the team's admins change them (also in the admin: TeamLimits, UserLimit)."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from fairness import usage
from fairness.forms import TeamLimitsForm, UserLimitForm
from fairness.models import TeamLimits, UserLimit
from teams.access import require
from teams.models import Team


@require_http_methods(["GET", "POST"])
def limits(request: HttpRequest) -> HttpResponse:
    team = _team(request)
    if team is None:
        return render(request, "fairness/limits.html", {"team": None})
    row = TeamLimits.objects.filter(team=team).first() or TeamLimits(team=team)
    team_form, user_form = TeamLimitsForm(instance=row), UserLimitForm(team=team)
    if request.method == "POST":
        require(team.can_manage(request.user), "change its limits")
        if request.POST.get("action") == "user":
            user_form = UserLimitForm(request.POST, team=team)
            if user_form.is_valid():
                _save_override(team, user_form.cleaned_data)
                return redirect(f"{reverse('fairness:limits')}?team={team.pk}")
        else:
            team_form = TeamLimitsForm(request.POST, instance=row)
            if team_form.is_valid():
                team_form.save()
                return redirect(f"{reverse('fairness:limits')}?team={team.pk}")
    context = {
        "team": team,
        "teams": Team.objects.for_user(request.user),
        "can_manage": team.can_manage(request.user),
        "team_form": team_form,
        "user_form": user_form,
        "members": usage.members(team, row),
        "totals": usage.team_totals(team),
    }
    status = 400 if team_form.errors or user_form.errors else 200
    return render(request, "fairness/limits.html", context, status=status)


def _team(request: HttpRequest) -> Team | None:
    """The team named by `team` (query or form; another team's is a 404 like a missing
    one), else the user's first."""
    raw = request.POST.get("team") or request.GET.get("team")
    visible = Team.objects.for_user(request.user)
    if not raw:
        return visible.first()
    team = visible.filter(pk=int(raw)).first() if raw.isdigit() else None
    if team is None:
        raise Http404("No such team.")
    return team


def _save_override(team: Team, data: dict) -> None:
    running, queued = data["max_running"], data["max_queued"]
    if running is None and queued is None:
        UserLimit.objects.filter(team=team, user=data["user"]).delete()
        return
    UserLimit.objects.update_or_create(
        team=team, user=data["user"], defaults={"max_running": running, "max_queued": queued}
    )
