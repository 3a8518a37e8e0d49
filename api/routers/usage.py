"""GPU-time usage (issue 18 item 2): totals over UTC days, grouped one way."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from ninja import Field, Query, Router, Schema
from pydantic import BeforeValidator

from accounting import access, reports
from accounting.period import Period
from accounting.quotas import Admission
from api.errors import ERRORS, invalid
from api.schemas import Id

router = Router(tags=["usage"])

GroupBy = Literal["day", "workflow", "server", "user", "team"]


def _iso_day(value: Any) -> Any:
    # Only YYYY-MM-DD: pydantic would otherwise read a number as a Unix time.
    if isinstance(value, str) and not (len(value) == 10 and value[4] == value[7] == "-"):
        raise ValueError("a day as YYYY-MM-DD")
    return value


Day = Annotated[date, BeforeValidator(_iso_day)]


class UsageFilters(Schema):
    from_: Day | None = Field(
        None, alias="from", description="First UTC day (default: this month's first)."
    )
    to: Day | None = Field(None, description="Last UTC day, included (default: this month's last).")
    group_by: GroupBy = "day"
    team: Id | None = Field(None, description="One of your teams; omit for all of them.")


class UsageRow(Schema):
    key: str = Field(description="The day, workflow, server, user or team name.")
    gpu_seconds: float
    seconds: float = Field(description="Seconds held on servers, before cost weights.")
    tasks: int
    attempts: int


class UsageOut(Schema):
    start: date
    end: date
    group_by: GroupBy
    rows: list[UsageRow]
    total: UsageRow


class QuotaOut(Schema):
    month: str = Field(description="The calendar month in UTC, e.g. 2026-12.")
    resets_at: str = Field(description="When the month's usage starts again from 0 (UTC).")
    used_gpu_seconds: float
    soft_gpu_seconds: float | None = Field(description="Past it: new work at low priority.")
    hard_gpu_seconds: float | None = Field(description="Past it: new work refused (429).")
    warnings: list[str] = Field(description="From 80 % of a limit.")
    lowered: bool = Field(False, description="This submission was queued at low priority.")


def quota_json(admission: Admission | None) -> dict[str, Any] | None:
    """A submission's quota notice; None when the team has no quota."""
    if admission is None or admission.state is None:
        return None
    return admission.state.as_json() | {"lowered": admission.lowered}


@router.get("/usage", response={200: UsageOut, **ERRORS}, summary="GPU time used")
def usage(request, filters: Query[UsageFilters]) -> dict[str, Any]:
    """Usage of your teams' attempts that ended on a UTC day from `from` to `to`; staff
    see every team. Another team's id is a 404."""
    default = Period.this_month()
    start, end = filters.from_ or default.start, filters.to or default.end
    if start > end:
        raise invalid([("to", "Must not be before `from`.")])
    teams = access.team_ids_for(request.user, filters.team)
    rows = reports.usage_between(teams, start, end)
    return {
        "start": start,
        "end": end,
        "group_by": filters.group_by,
        "rows": [vars(row) for row in reports.totals(rows, filters.group_by)],
        "total": vars(reports.grand_total(rows)),
    }
