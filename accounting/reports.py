"""Totals of Usage rows over a date range, grouped one way (day, workflow, server, user, team)."""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime

from django.db.models import Count, F, QuerySet, Sum

from accounting.models import Usage

# group_by -> the Usage column that names a row.
GROUPS: dict[str, str] = {
    "day": "day",
    "workflow": "workflow",
    "server": "server_name",
    "user": "username",
    "team": "team__name",
}


@dataclass(frozen=True)
class Row:
    key: str
    seconds: float
    gpu_seconds: float
    tasks: int
    attempts: int


def month_of(day: date) -> tuple[date, date]:
    """The calendar month (UTC) holding `day`: its first and last day."""
    last = calendar.monthrange(day.year, day.month)[1]
    return day.replace(day=1), day.replace(day=last)


def next_month_start(month: str) -> date:
    """The first day of the month after `month` ("2026-12" -> 2027-01-01)."""
    year, number = (int(part) for part in month.split("-"))
    return date(year + number // 12, number % 12 + 1, 1)


def today_utc() -> date:
    return datetime.now(UTC).date()


def usage_between(team_ids: Iterable[int], start: date, end: date) -> QuerySet[Usage]:
    """Usage rows of these teams that ended on a UTC day from `start` to `end`, both included."""
    return Usage.objects.filter(team_id__in=list(team_ids), day__gte=start, day__lte=end)


def totals(rows: QuerySet[Usage], group_by: str) -> list[Row]:
    """One Row per group, biggest GPU-seconds first (days in order)."""
    column = GROUPS[group_by]
    grouped = (
        rows.order_by()
        .values(key=F(column))
        .annotate(
            seconds=Sum("seconds"),
            gpu_seconds=Sum("gpu_seconds"),
            tasks=Count("task_ref", distinct=True),
            attempts=Count("pk"),
        )
    )
    result = [
        Row(
            key=str(row["key"]) if row["key"] not in (None, "") else "—",
            seconds=row["seconds"] or 0.0,
            gpu_seconds=row["gpu_seconds"] or 0.0,
            tasks=row["tasks"],
            attempts=row["attempts"],
        )
        for row in grouped
    ]
    if group_by == "day":
        return sorted(result, key=lambda row: row.key)
    return sorted(result, key=lambda row: (-row.gpu_seconds, row.key))


def grand_total(rows: QuerySet[Usage]) -> Row:
    summed = rows.order_by().aggregate(
        seconds=Sum("seconds"),
        gpu_seconds=Sum("gpu_seconds"),
        tasks=Count("task_ref", distinct=True),
        attempts=Count("pk"),
    )
    return Row(
        key="total",
        seconds=summed["seconds"] or 0.0,
        gpu_seconds=summed["gpu_seconds"] or 0.0,
        tasks=summed["tasks"],
        attempts=summed["attempts"],
    )
