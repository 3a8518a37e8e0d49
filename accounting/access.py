"""Which teams' usage a user may read: their own teams' (every team for staff)."""

from __future__ import annotations

from django.http import Http404

from teams.models import Team


def team_for(user, team_id: int | None) -> Team:
    """The team asked for; another team's is a 404 like a missing one."""
    team = Team.objects.for_user(user).filter(pk=team_id).first() if team_id else None
    if team is None:
        raise Http404("No such team.")
    return team


def team_or_first(user, team_id: int | None) -> Team | None:
    """The team asked for (404 if not the user's), else the user's first, if any."""
    if team_id:
        return team_for(user, team_id)
    return Team.objects.for_user(user).first()


def team_ids_for(user, team_id: int | None) -> list[int]:
    """The one team asked for, or every team the user may read."""
    if team_id:
        return [team_for(user, team_id).pk]
    return list(Team.objects.for_user(user).values_list("pk", flat=True))
