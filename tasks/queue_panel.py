"""The dashboard's queue panel: state, counts and timings of the user's teams.

Its content differs per user (their teams), so instead of pushing HTML every
state change broadcasts a refresh hint on the "queue" topic and each browser
fetches its own panel (`comfyweb.live.publish_refresh`).
"""

from __future__ import annotations

from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse

from comfyweb import live, topics
from tasks import queue
from tasks.models import Priority, QueuePause, Status, Team

TOPIC = "queue"
TARGET = "queue-panel"


def context(user) -> dict:
    teams = list(Team.objects.for_user(user))
    team_ids = None if user.is_staff else [team.pk for team in teams]
    stats = queue.stats(team_ids)
    pauses = {p.team_id: p for p in QueuePause.objects.select_related("team", "paused_by")}
    return {
        "stats": stats,
        "statuses": [(s.label, stats["counts"].get(s.value, 0)) for s in Status],
        "priorities": [(p.label, stats["by_priority"].get(p.label.lower(), 0)) for p in Priority],
        "global_pause": pauses.get(None),
        "team_pauses": [pauses[t.pk] for t in teams if t.pk in pauses],
        "manageable": [t for t in teams if t.can_manage(user)],
    }


def render(user) -> str:
    return render_to_string("tasks/queue/panel.html", context(user))


def refresh_browsers(**signal_kwargs) -> None:
    """Connected to `task_transitioned` and new submissions: tell dashboards to refetch."""
    live.publish_refresh(TOPIC, TARGET, reverse("tasks:queue_panel"))


def on_task_saved(sender, instance, created: bool, **kwargs) -> None:
    """A submitted task changes the counts too; hint once its transaction commits."""
    if created:
        transaction.on_commit(refresh_browsers)


topic = topics.Topic(
    name=TOPIC,
    allowed=lambda user, key: key is None and user.is_authenticated and user.is_active,
    snapshot=lambda user, key: [(TARGET, render(user))],
)
