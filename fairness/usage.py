"""What runs and waits against a team's limits, for its limits page (two queries)."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Q

from fairness.models import TeamLimits, UserLimit
from tasks.models import Status, Task
from teams.models import Team

RUNNING = Q(status__in=Status.active(), slot_held=True)
WAITING = Q(status=Status.PENDING)


@dataclass(frozen=True)
class MemberRow:
    username: str
    running: int
    queued: int
    max_running: int | None
    max_queued: int | None
    overridden: bool


def team_totals(team: Team) -> dict[str, int]:
    return Task.objects.filter(team=team).aggregate(
        running=Count("pk", filter=RUNNING), queued=Count("pk", filter=WAITING)
    )


def members(team: Team, limits: TeamLimits) -> list[MemberRow]:
    """Each member's tasks running and waiting, and the limits that apply to them."""
    counts = {
        row["submitter_id"]: row
        for row in Task.objects.filter(team=team)
        .filter(RUNNING | WAITING)
        .order_by()
        .values("submitter_id")
        .annotate(running=Count("pk", filter=RUNNING), queued=Count("pk", filter=WAITING))
    }
    overrides = {row.user_id: row for row in UserLimit.objects.filter(team=team)}
    rows = []
    for user in team.members.order_by("username"):
        own = overrides.get(user.pk)
        seen = counts.get(user.pk, {})
        rows.append(
            MemberRow(
                username=user.get_username(),
                running=seen.get("running", 0),
                queued=seen.get("queued", 0),
                max_running=_either(own and own.max_running, limits.user_max_running),
                max_queued=_either(own and own.max_queued, limits.user_max_queued),
                overridden=own is not None,
            )
        )
    return rows


def _either(own: int | None, default: int | None) -> int | None:
    return own if own is not None else default
