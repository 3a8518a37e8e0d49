"""Priority aging: a pending task rises one level per `COMFYWEB_AGING_SECONDS_PER_LEVEL`
(R) seconds waited, up to Urgent.

    effective = min(Urgent, priority + floor(waited / R))

The bound: a Low task has waited 3R when it reaches Urgent, the level of fresh
Urgent work. From then on it is among the tasks of the top level, where the
teams take turns and each team's oldest task comes first (`tasks.queue`), so it
is the next of its team's and it goes before the fresh Urgent tasks, which are
younger. It starts within 3R plus the time for the slots to free for the tasks
already ahead of it at that moment (older top-level tasks, one turn of each
other team's).

Levels are capped at Urgent, so once everyone has waited long enough the queue
is plain first-come-first-served by team turns: nothing waits behind work that
came later, whatever its priority. Written as a CASE over `created_at` against
three thresholds computed once in Python: the same SQL on PostgreSQL and SQLite,
and a constant per query, so the order costs what the un-aged order did (one
sort of the ready pending tasks, which the window over team turns needs anyway).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Case, F, IntegerField, Value, When
from django.db.models.expressions import Combinable
from django.db.models.functions import Least

from tasks.models import Priority

TOP = int(Priority.URGENT)
LEVELS = TOP - int(Priority.LOW)  # the most any task can rise


def seconds_per_level() -> int:
    """R; 0 means aging is off."""
    return int(getattr(settings, "COMFYWEB_AGING_SECONDS_PER_LEVEL", 600))


def effective_priority(now: datetime, *, rate: int | None = None) -> Combinable:
    """The expression of a task's effective priority at `now` (plain `priority` when off)."""
    rate = seconds_per_level() if rate is None else rate
    if rate <= 0:
        return F("priority")
    # Oldest threshold first: a task past 3R has risen three levels, and so on.
    risen = [
        When(created_at__lte=now - timedelta(seconds=rate * levels), then=Value(levels))
        for levels in range(LEVELS, 0, -1)
    ]
    rise = Case(*risen, default=Value(0), output_field=IntegerField())
    return Least(F("priority") + rise, Value(TOP), output_field=IntegerField())


def effective_priority_of(priority: int, created_at: datetime, now: datetime) -> int:
    """The same as `effective_priority`, in Python (pages and tests)."""
    rate = seconds_per_level()
    if rate <= 0:
        return priority
    waited = max(0.0, (now - created_at).total_seconds())
    return min(TOP, priority + min(LEVELS, int(waited // rate)))


def starvation_bound_seconds() -> float:
    """The wait after which a Low task is at the top level (3R): it is served in
    the top level's turn from then on."""
    return float(LEVELS * seconds_per_level())
