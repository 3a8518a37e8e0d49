"""The dashboard's queue panel: state, counts and timings of the user's teams.

Its content differs per user (their teams), so instead of pushing HTML every
state change broadcasts a refresh hint on the "queue" topic and each browser
fetches its own panel (`comfyweb.live.publish_refresh`).

The fleet panel beside it shows tasks in flight per server: both panels are
rendered from one `queue.work_counts()` read, on the page and in every refresh
(which carries both), so their numbers agree.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.cache import cache
from django.template.loader import render_to_string
from django.urls import reverse

from comfyweb import live, topics
from servers import status_panel
from tasks import eta, queue
from tasks.models import Priority, QueuePause, Status
from teams.models import Team

TOPIC = "queue"
TARGET = "queue-panel"
ALL_DONE_KEY = "tasks:eta:all-done"
ALL_DONE_TTL = 2  # seconds; the panel counts down in between


@dataclass(frozen=True)
class Control:
    """One queue the user may pause: its Pause or Resume button shows which it is now."""

    label: str
    team_id: int | str  # "" is everyone's queue (queue_scope_for)
    pause: QueuePause | None


def context(user, work: queue.WorkCounts | None = None) -> dict:
    teams = list(Team.objects.for_user(user))
    team_ids = None if user.is_staff else [team.pk for team in teams]
    stats = queue.stats(team_ids, work=work)
    pauses = {p.team_id: p for p in QueuePause.objects.select_related("team", "paused_by")}
    manageable = [t for t in teams if t.can_manage(user)]
    controls = [Control("Everyone", "", pauses.get(None))] if user.is_staff else []
    controls += [Control(t.name, t.pk, pauses.get(t.pk)) for t in manageable]
    return {
        "stats": stats,
        "statuses": [(s.label, stats["counts"].get(s.value, 0)) for s in Status],
        "priorities": [(p.label, stats["by_priority"].get(p.label.lower(), 0)) for p in Priority],
        "global_pause": pauses.get(None),
        "team_pauses": [pauses[t.pk] for t in teams if t.pk in pauses],
        "controls": controls,
        # Whose tasks the counts are (the fleet panel's in-flight counts everyone's).
        "scope": "every team" if team_ids is None else ", ".join(t.name for t in teams),
        "all_done": all_done(),
    }


def all_done():
    """When the fleet should be through all its work (`tasks.eta.all_done`): one
    forecast every ALL_DONE_TTL for every dashboard, which refetches on each change."""
    return cache.get_or_set(ALL_DONE_KEY, eta.all_done, ALL_DONE_TTL)


def dashboard_context(user) -> dict:
    """The queue panel's and the fleet panel's context from one read of the counts."""
    work = queue.work_counts()
    return status_panel.table_context(work=work.server_work()) | context(user, work)


def render_panels(user) -> list[tuple[str, str]]:
    """(target, html) of the queue panel and the fleet panel, from one read."""
    both = dashboard_context(user)
    return [
        (TARGET, render_to_string("tasks/queue/panel.html", both)),
        (status_panel.COMPACT_TARGET, status_panel.render_compact(both)),
    ]


def refresh_browsers(**signal_kwargs) -> None:
    """Connected to `task_transitioned` and new submissions: tell dashboards to refetch."""
    live.publish_refresh(TOPIC, TARGET, reverse("tasks:queue_panel"))


topic = topics.Topic(
    name=TOPIC,
    allowed=lambda user, key: key is None and user.is_authenticated and user.is_active,
    snapshot=lambda user, key: render_panels(user),
)
