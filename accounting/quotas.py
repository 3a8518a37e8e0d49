"""Monthly GPU-second quotas, checked as a team submits (the hook in tasks/submission.py).

The month is the calendar month in UTC: usage counts on the UTC day its attempt
ended, and every team's month turns over at 00:00 UTC on the 1st. Attempts still
running count once they end, so a team can pass a limit by what is already on
the servers; the check is on what is billed, at submission.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import ValidationError

from accounting import reports
from accounting.models import TeamQuota
from tasks.models import Priority

WARN_AT = 0.8


@dataclass(frozen=True)
class QuotaState:
    """A team's month so far against its limits (None: no such limit)."""

    used: float
    soft: float | None
    hard: float | None
    month: str  # "2026-12"

    @property
    def over_soft(self) -> bool:
        return self.soft is not None and self.used >= self.soft

    @property
    def over_hard(self) -> bool:
        return self.hard is not None and self.used >= self.hard

    @property
    def warnings(self) -> list[str]:
        """What members should read: at 80 % of a limit and past it."""
        said = []
        for name, limit in (("hard", self.hard), ("soft", self.soft)):
            if limit is not None and self.used >= WARN_AT * limit:
                share = self.used / limit * 100 if limit else 100.0
                said.append(
                    f"{share:.0f} % of the {name} GPU quota used in {self.month} (UTC): "
                    f"{self.used:,.0f} of {limit:,.0f} GPU-seconds"
                )
        return said

    def as_json(self) -> dict:
        return {
            "month": self.month,
            "resets_at": f"{reports.next_month_start(self.month)}T00:00:00Z",
            "warnings": self.warnings,
            "used_gpu_seconds": round(self.used, 3),
            "soft_gpu_seconds": self.soft,
            "hard_gpu_seconds": self.hard,
        }


class QuotaExceeded(ValidationError):
    """The team used its hard quota this month: nothing more is queued."""

    def __init__(self, state: QuotaState) -> None:
        self.state = state
        self.message_text = (
            f"Your team used its hard GPU quota for {state.month} (UTC): "
            f"{state.used:,.0f} of {state.hard:,.0f} GPU-seconds."
        )
        super().__init__(self.message_text, code="quota_exceeded")


@dataclass(frozen=True)
class Admission:
    """What the quota made of a submission: its priority, and what to tell the user."""

    priority: int
    lowered: bool
    state: QuotaState | None

    @property
    def note(self) -> str:
        if not self.lowered or self.state is None:
            return ""
        return (
            f"queued at low priority: the team is past its soft GPU quota for "
            f"{self.state.month} (UTC), "
            f"{self.state.used:,.0f} of {self.state.soft:,.0f} GPU-seconds"
        )

    @property
    def warnings(self) -> list[str]:
        return self.state.warnings if self.state is not None else []


def state_of(team_id: int) -> QuotaState | None:
    """This month's usage against the team's quota; None when it has none."""
    quota = TeamQuota.objects.filter(team_id=team_id).first()
    if quota is None or (quota.soft_gpu_seconds is None and quota.hard_gpu_seconds is None):
        return None
    today = reports.today_utc()
    first, last = reports.month_of(today)
    used = reports.grand_total(reports.usage_between([team_id], first, last)).gpu_seconds
    return QuotaState(
        used=used,
        soft=quota.soft_gpu_seconds,
        hard=quota.hard_gpu_seconds,
        month=today.strftime("%Y-%m"),
    )


def admit(team_id: int, priority: int) -> Admission:
    """Raises QuotaExceeded past the hard limit; past the soft one the priority is low."""
    state = state_of(team_id)
    if state is None:
        return Admission(priority=priority, lowered=False, state=None)
    if state.over_hard:
        raise QuotaExceeded(state)
    if state.over_soft and priority > Priority.LOW:
        return Admission(priority=Priority.LOW, lowered=True, state=state)
    return Admission(priority=priority, lowered=False, state=state)
