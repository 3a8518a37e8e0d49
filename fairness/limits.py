"""Enforcing `TeamLimits` and `UserLimit`: queued limits at submission, running limits
at dispatch, and the words for a task held back by one.

Dispatch reads the limits and the running counts once per pass (`RunningLimits.load`:
two queries when no team has a running limit, three when some have), keeps the
counts up to date as it claims, and reads candidates without the tasks of teams and
users already at their limit — so a held-back user's thousands of tasks never fill
the candidate window ahead of the others'.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db.models import Count, F, IntegerField, Q, Value

from fairness.models import TeamLimits, UserLimit
from tasks.models import Status, Task


class QueueLimitReached(ValidationError):
    """A submission would put more tasks in the queue than a limit allows."""

    def __init__(self, *, scope: str, who: str, limit: int, queued: int, submitting: int):
        self.scope, self.who = scope, who
        self.limit, self.queued, self.submitting = limit, queued, submitting
        self.message_text = (
            f"{who} may have at most {limit} task{'s' if limit != 1 else ''} waiting "
            f"({scope} limit): {queued} waiting now, {submitting} more submitted"
        )
        super().__init__(self.message_text)

    def as_json(self) -> dict[str, object]:
        return {
            "scope": self.scope,
            "limit": self.limit,
            "queued": self.queued,
            "submitting": self.submitting,
        }


def require_queue_room(team, user, submitting: int) -> None:
    """Raise `QueueLimitReached` if `submitting` more pending tasks would pass the
    team's or the user's queued limit. Call inside the submission's transaction:
    the limits row is locked, so two submissions at once cannot both squeeze in."""
    limits = TeamLimits.objects.select_for_update().filter(team=team).first()
    own = None
    if user is not None and user.pk is not None:
        own = UserLimit.objects.select_for_update().filter(team=team, user=user).first()
    team_max = limits.max_queued if limits else None
    user_max = _first_set(own and own.max_queued, limits and limits.user_max_queued)
    if team_max is None and user_max is None:
        return
    pending = Task.objects.filter(team=team, status=Status.PENDING)
    if team_max is not None:
        queued = pending.count()
        if queued + submitting > team_max:
            raise QueueLimitReached(
                scope="team", who=team.name, limit=team_max, queued=queued, submitting=submitting
            )
    if user_max is not None:
        queued = pending.filter(submitter=user).count()
        if queued + submitting > user_max:
            raise QueueLimitReached(
                scope="user",
                who=f"{user.get_username()} in {team.name}",
                limit=user_max,
                queued=queued,
                submitting=submitting,
            )


@dataclass
class RunningLimits:
    """The running limits of every team that has one, and what runs now."""

    team_max: dict[int, int] = field(default_factory=dict)
    user_default: dict[int, int] = field(default_factory=dict)  # team -> each member's
    user_override: dict[tuple[int, int], int | None] = field(default_factory=dict)
    team_running: dict[int, int] = field(default_factory=dict)
    user_running: dict[tuple[int, int], int] = field(default_factory=dict)
    team_names: dict[int, str] = field(default_factory=dict)

    @classmethod
    def load(cls, team_ids: Iterable[int] | None = None) -> RunningLimits:
        """For these teams (None: all)."""
        limits = cls()
        for team_id, user_id, name, most, each in _limit_rows(team_ids):
            limits.team_names[team_id] = name
            if user_id is not None:  # a member's own (UserLimit)
                limits.user_override[team_id, user_id] = most
                continue
            if most is not None:
                limits.team_max[team_id] = most
            if each is not None:
                limits.user_default[team_id] = each
        limited = set(limits.team_names) | {team for team, _user in limits.user_override}
        if not limited:
            return limits
        running = (
            Task.objects.filter(team_id__in=limited, status__in=Status.active(), slot_held=True)
            .order_by()
            .values_list("team_id", "submitter_id")
            .annotate(n=Count("pk"))
        )
        for team_id, user_id, n in running:
            limits.team_running[team_id] = limits.team_running.get(team_id, 0) + n
            if user_id is not None:
                limits.user_running[team_id, user_id] = n
        return limits

    def user_max(self, team_id: int, user_id: int | None) -> int | None:
        if user_id is None:
            return None
        if (team_id, user_id) in self.user_override:
            return self.user_override[team_id, user_id]
        return self.user_default.get(team_id)

    def held_back(self, team_id: int, user_id: int | None) -> str | None:
        """Why a task of this team and submitter may not start now (None: it may)."""
        team_max = self.team_max.get(team_id)
        running = self.team_running.get(team_id, 0)
        if team_max is not None and running >= team_max:
            name = self.team_names.get(team_id, "the team")
            return f"{name} has {running} of its {team_max} allowed tasks running (team limit)"
        user_max = self.user_max(team_id, user_id)
        running = self.user_running.get((team_id, user_id), 0)
        if user_max is not None and running >= user_max:
            return (
                f"its submitter has {running} of their {user_max} allowed tasks running "
                "(user limit)"
            )
        return None

    def started(self, team_id: int, user_id: int | None) -> None:
        """Count a task claimed in this pass."""
        self.team_running[team_id] = self.team_running.get(team_id, 0) + 1
        if user_id is not None:
            key = (team_id, user_id)
            self.user_running[key] = self.user_running.get(key, 0) + 1

    def exclusion(self) -> Q | None:
        """The tasks of teams and users at their limit, as a filter (None: none are).
        A member whose limit is 0 and who runs nothing is not in it: dispatch's
        per-task check (`held_back`) skips those few."""
        full_teams = {t for t, most in self.team_max.items() if self.team_running.get(t, 0) >= most}
        full = Q(team_id__in=full_teams) if full_teams else Q()
        for team_id, user_id in set(self.user_override) | set(self.user_running):
            if team_id not in full_teams and self.held_back(team_id, user_id):
                full |= Q(team_id=team_id, submitter_id=user_id)
        return full or None


def reasons(tasks: Iterable[Task]) -> dict[int, str]:
    """Task id -> the limit holding it back, for the pending ones among `tasks`."""
    pending = [task for task in tasks if task.status == Status.PENDING]
    if not pending:
        return {}
    limits = RunningLimits.load({task.team_id for task in pending})
    if not limits.team_names:
        return {}  # no limits on these teams: nothing more to read
    # Lists load their rows without the submitter: read them all at once here.
    submitters = dict(
        Task.objects.filter(pk__in=[task.pk for task in pending]).values_list("pk", "submitter_id")
    )
    found = {}
    for task in pending:
        if reason := limits.held_back(task.team_id, submitters.get(task.pk)):
            found[task.pk] = reason
    return found


def _limit_rows(team_ids: Iterable[int] | None):
    """(team, user or None, team name, max running, each member's max running) of the
    teams' and members' running limits, in one query (pages and dispatch pay one
    query when nobody has a limit)."""
    number = IntegerField()

    def columns(queryset, user, each):
        return queryset.annotate(
            t=F("team_id"), u=user, n=F("team__name"), r=F("max_running"), e=each
        ).values_list("t", "u", "n", "r", "e")

    teams = TeamLimits.objects.filter(
        Q(max_running__isnull=False) | Q(user_max_running__isnull=False)
    )
    members = UserLimit.objects.filter(max_running__isnull=False)
    if team_ids is not None:
        team_ids = list(team_ids)
        teams, members = teams.filter(team_id__in=team_ids), members.filter(team_id__in=team_ids)
    return columns(teams, Value(None, number), F("user_max_running")).union(
        columns(members, F("user_id"), Value(None, number)), all=True
    )


def _first_set(*values: int | None) -> int | None:
    return next((value for value in values if value is not None), None)
