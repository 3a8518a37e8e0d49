"""Resolving what a request body names (a team, a priority) with the pages' rules."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404

from api.errors import invalid
from tasks.models import Priority
from teams.models import Team
from workflows.forms.workflows import submit_teams

PRIORITIES = {p.label.lower(): p.value for p in Priority}
PRIORITY_NAMES = {value: name for name, value in PRIORITIES.items()}


def team_to_create_in(user, team_id: int | None) -> Team:
    """The team new work goes to: the one named (visible, and the user may submit there),
    or the user's only such team when none is named."""
    if team_id is not None:
        team = Team.objects.for_user(user).filter(pk=team_id).first()
        if team is None:
            raise Http404("No such team.")
        if not team.can_submit(user):
            raise PermissionDenied("Your role in this team does not allow you to create work.")
        return team
    teams = submit_teams(user)
    if not teams:
        raise PermissionDenied("You are not a member (or admin) of a team that can create work.")
    if len(teams) > 1:
        names = ", ".join(f"{team.pk} ({team.name})" for team in teams)
        raise invalid([("team", f"You are in several teams; name one of: {names}.")])
    return teams[0]
