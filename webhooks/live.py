"""Live delivery log (on `comfyweb.live`): topic "webhooks", key = team id.

A delivery that was tried (or redelivered) broadcasts a refresh hint; each open
webhooks page fetches its own log again (its `data-refresh-url`: the endpoint page
its endpoint's, the list page the team's), so one hint serves both.
"""

from __future__ import annotations

from django.urls import reverse

from comfyweb import live, topics
from teams.models import Team

TOPIC = "webhooks"
TARGET = "webhook-deliveries"


def refresh(delivery) -> None:
    url = reverse("webhooks:list_panel") + f"?team={delivery.team_id}"
    live.publish_refresh(TOPIC, TARGET, url, key=str(delivery.team_id))


def _allowed(user, key: str | None) -> bool:
    return key is not None and key.isdigit() and Team.objects.for_user(user).filter(pk=key).exists()


def _snapshot(user, key: str | None) -> topics.Snapshot:
    return []  # the page's log refetches itself once subscribed (data-refresh-on-subscribe)


topic = topics.Topic(name=TOPIC, allowed=_allowed, snapshot=_snapshot)
