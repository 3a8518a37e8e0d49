"""Our queue (S4, S7, A5; ARCHITECTURE decision 1): its order, pause/resume/clear, stats.

Order (`next_candidates`): higher effective priority first (priority raised by
waiting: `fairness.aging`); within one effective priority the teams take turns —
each team's pending tasks are ranked by age and the queue is read by (effective
priority desc, rank, age) — so one team's batch of 1,000 does not starve
another team's single task. Paused teams, a global pause and tasks whose
`not_before` (retry backoff) lies ahead are skipped.

A pause stops new dispatches only: what is already on a server runs on. Dispatch
checks the pause when it reads candidates, so a task read a moment before a
pause may still be sent; nothing is sent after that pass.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Case, Count, F, Min, Q, QuerySet, When, Window
from django.db.models.functions import RowNumber
from django.dispatch import Signal
from django.utils import timezone

from fairness import aging
from servers.requirements import Requirements, requirements_from_graph
from servers.status_panel import ServerWork
from tasks import enqueue
from tasks.models import Priority, QueuePause, Status, Task
from tasks.transitions import transition
from teams.models import Team

WAIT_WINDOW = timedelta(hours=1)
THROUGHPUT_WINDOW = timedelta(minutes=10)

# Sent after commit when a pause starts or ends: every dashboard's queue panel (its
# state and its Pause/Resume buttons) changes, whoever paused, from a page or the API.
pause_changed = Signal()


def is_paused(team_id: int | None) -> bool:
    """True if the whole queue or this team's queue is paused (None: the global pause only)."""
    scopes = [QueuePause.scope_for(None)]
    if team_id is not None:
        scopes.append(QueuePause.scope_for(team_id))
    return QueuePause.objects.filter(scope__in=scopes).exists()


def pause(team: Team | None = None, *, by=None, reason: str = "") -> QueuePause:
    """Pause the whole queue (staff) or one team's (its admins). Pausing twice is one pause.

    `by=None` is the system itself (no permission check).
    """
    _check_control(team, by)
    row, created = QueuePause.objects.get_or_create(
        scope=QueuePause.scope_for(team.pk if team else None),
        defaults={"team": team, "paused_by": by, "reason": reason[:200]},
    )
    if created:
        transaction.on_commit(_announce_pause, robust=True)
    return row


def resume(team: Team | None = None, *, by=None) -> bool:
    """Lift the pause; dispatch is woken after commit. False if it was not paused."""
    _check_control(team, by)
    deleted, _ = QueuePause.objects.filter(
        scope=QueuePause.scope_for(team.pk if team else None)
    ).delete()
    if deleted:
        transaction.on_commit(_wake, robust=True)
        transaction.on_commit(_announce_pause, robust=True)
    return bool(deleted)


def clear(team: Team | None = None, *, by=None) -> int:
    """Cancel every pending task (of one team, or of all); how many were canceled.

    Each one goes through `transition()`, so a task dispatch claims at the same
    moment is either canceled here or sent — never both.
    """
    _check_control(team, by)
    pending = Task.objects.filter(status=Status.PENDING)
    if team is not None:
        pending = pending.filter(team=team)
    who = getattr(by, "username", "") or "the system"
    return sum(
        transition(task_id, Status.PENDING, Status.CANCELED, message=f"queue cleared by {who}")
        for task_id in pending.values_list("pk", flat=True).iterator()
    )


# What dispatch reads of a candidate (its balancer inputs, limits, claim and
# timeline); any other field is read from the database when first used.
CANDIDATE_FIELDS = (
    "id",
    "team_id",
    "submitter_id",
    "attempts",
    "workflow_key",
    "affinity_key",
    "speed_key",
    "work_units",
)


def next_candidates(limit: int, *, now=None, held_back: Q | None = None) -> list[Task]:
    """Up to `limit` pending tasks that may be dispatched now, in dispatch order,
    leaving out those `held_back` matches (teams and users at their running limit).

    Only `CANDIDATE_FIELDS` are read (and `effective_priority`); the graph, say,
    only when used: dispatch needs few.
    """
    if limit <= 0:
        return []
    ordered = in_dispatch_order(now=now, held_back=held_back)
    return list(ordered.only(*CANDIDATE_FIELDS)[:limit])


def in_dispatch_order(*, now=None, held_back: Q | None = None) -> QuerySet[Task]:
    """The pending tasks that may be dispatched now, in the order dispatch takes
    them: effective priority (priority raised by waiting, `fairness.aging`), then
    the teams of one effective priority in turn, oldest first. None while the
    whole queue is paused."""
    now = now or timezone.now()
    if is_paused(None):
        return Task.objects.none()
    paused_teams = QueuePause.objects.filter(team__isnull=False).values("team_id")
    ready = (
        Task.objects.filter(status=Status.PENDING)
        .filter(Q(not_before__isnull=True) | Q(not_before__lte=now))
        .exclude(team_id__in=paused_teams)
    )
    if held_back is not None:
        ready = ready.exclude(held_back)
    # The rank must be computed over the ready tasks only (a paused team's or a
    # backing-off task's place does not count), hence the window over this queryset.
    # Teams take turns within an effective (aged) priority: fairness.aging.
    ranked = ready.annotate(effective_priority=aging.effective_priority(now)).annotate(
        turn=Window(
            RowNumber(),
            partition_by=[F("effective_priority"), F("team_id")],
            order_by=[F("created_at").asc(), F("id").asc()],
        )
    )
    return ranked.order_by("-effective_priority", "turn", "created_at", "id")


def pending_work() -> list[tuple[Requirements, int]]:
    """What the pending tasks need from a server, and how many need it (what container
    pools are sized by). Grouped by workflow key, read off one graph of each group:
    a key names the graph up to its seeds, so one graph tells what all of them need.
    A paused queue's tasks are left out; tasks backing off a failed run count.
    """
    if is_paused(None):
        return []
    paused_teams = QueuePause.objects.filter(team__isnull=False).values("team_id")
    pending = Task.objects.filter(status=Status.PENDING).exclude(team_id__in=paused_teams)
    groups = list(
        pending.exclude(workflow_key="")
        .order_by()
        .values("workflow_key")
        .annotate(n=Count("pk"), sample=Min("pk"))
    )
    samples = [(group["sample"], group["n"]) for group in groups]
    samples += [(pk, 1) for pk in pending.filter(workflow_key="").values_list("pk", flat=True)]
    graphs = Task.objects.in_bulk([pk for pk, _ in samples])
    return [
        (requirements_from_graph(graphs[pk].graph, workflow_key=graphs[pk].workflow_key), n)
        for pk, n in samples
        if pk in graphs
    ]


@dataclass(frozen=True)
class WorkCounts:
    """Tasks counted by (team, status, server while active, priority while pending),
    in one query.

    The dashboard's queue panel (counts by status) and fleet panel (active tasks
    per server) both read one of these, so "1/2 in flight" on a server can never
    sit beside "0 dispatched, 0 running" for the same moment.
    """

    # (team, status, server while active or None, slot held, priority or None, count)
    rows: tuple[tuple[int, str, int | None, bool, int | None, int], ...]

    def by_status(self, team_ids: Iterable[int] | None = None) -> dict[str, int]:
        teams = None if team_ids is None else set(team_ids)
        counts = dict.fromkeys(Status.values, 0)
        for team, status, _server, _slot_held, _priority, n in self.rows:
            if teams is None or team in teams:
                counts[status] = counts.get(status, 0) + n
        return counts

    def pending_by_priority(self, team_ids: Iterable[int] | None = None) -> dict[int, int]:
        teams = None if team_ids is None else set(team_ids)
        counts: dict[int, int] = {}
        for team, _status, _server, _slot_held, priority, n in self.rows:
            if priority is not None and (teams is None or team in teams):
                counts[priority] = counts.get(priority, 0) + n
        return counts

    def server_work(self) -> ServerWork:
        """Every team's active tasks per server: holding a slot, or collecting."""
        inflight: dict[int, int] = {}
        collecting: dict[int, int] = {}
        for _team, _status, server, slot_held, _priority, n in self.rows:
            if server is not None:
                counts = inflight if slot_held else collecting
                counts[server] = counts.get(server, 0) + n
        return ServerWork(inflight=inflight, collecting=collecting)


def work_counts() -> WorkCounts:
    on_server = Case(When(status__in=Status.active(), then=F("server_id")), default=None)
    waiting = Case(When(status=Status.PENDING, then=F("priority")), default=None)
    rows = (
        Task.objects.order_by()
        .annotate(on_server=on_server, waiting=waiting)
        .values_list("team_id", "status", "on_server", "slot_held", "waiting")
        .annotate(n=Count("pk"))
    )
    return WorkCounts(tuple(rows))


def server_work() -> ServerWork:
    """Active tasks per server (the fleet panels' numbers, outside the dashboard)."""
    return ServerWork(inflight=_active_by_server(slot_held=True), collecting=collecting_by_server())


def _active_by_server(*, slot_held: bool) -> dict[int, int]:
    rows = (
        Task.objects.filter(status__in=Status.active(), slot_held=slot_held, server__isnull=False)
        .order_by()
        .values_list("server_id")
        .annotate(n=Count("pk"))
    )
    return dict(rows)


def stats(
    team_ids: Iterable[int] | None = None, *, now=None, work: WorkCounts | None = None
) -> dict[str, Any]:
    """Numbers for the dashboard's queue panel, for these teams (None: all).

    - `counts`: tasks by status value; `by_priority`: waiting (pending) tasks by
      lower-case priority label;
    - `wait_seconds`: p50/p90/p99 of submit → dispatch for tasks dispatched in
      the last hour (None each when there were none);
    - `throughput_per_minute`: tasks completed per minute over the last 10 minutes;
    - `paused`: whether the global queue is paused.

    `work`: the `work_counts()` the rest of the page is rendered from, if any.
    """
    now = now or timezone.now()
    tasks = Task.objects.all()
    if team_ids is not None:
        team_ids = list(team_ids)
        tasks = tasks.filter(team_id__in=team_ids)
    work = work or work_counts()
    counts = work.by_status(team_ids)
    labels = {p.value: p.label.lower() for p in Priority}
    by_priority = dict.fromkeys(labels.values(), 0)
    for priority, n in work.pending_by_priority(team_ids).items():
        by_priority[labels.get(priority, str(priority))] = n
    waits = [
        (dispatched - created).total_seconds()
        for created, dispatched in tasks.filter(dispatched_at__gte=now - WAIT_WINDOW).values_list(
            "created_at", "dispatched_at"
        )
    ]
    completed = tasks.filter(
        status=Status.COMPLETED, finished_at__gte=now - THROUGHPUT_WINDOW
    ).count()
    return {
        "counts": {status.value: counts.get(status.value, 0) for status in Status},
        "by_priority": by_priority,
        "wait_seconds": {f"p{q}": percentile(waits, q) for q in (50, 90, 99)},
        "throughput_per_minute": completed / (THROUGHPUT_WINDOW.total_seconds() / 60),
        "paused": is_paused(None),
    }


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (the value at or above q% of the sample); None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _check_control(team: Team | None, by) -> None:
    if by is None:
        return
    allowed = by.is_staff if team is None else team.can_manage(by)
    if not allowed:
        raise PermissionDenied("You cannot control this queue.")


def _wake() -> None:
    enqueue.wake_dispatch()


def _announce_pause() -> None:
    pause_changed.send(sender=QueuePause)


def collecting_by_server() -> dict[int, int]:
    """Server id -> tasks whose prompt is done there (slot given back) and whose
    outputs are still being fetched from it."""
    return _active_by_server(slot_held=False)
