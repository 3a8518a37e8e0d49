"""Live usage: a new Usage row tells that team's open usage pages to fetch their report.

The report depends on the page's date range, so the socket carries a refresh hint
(`comfyweb.live.publish_refresh`), and each page fetches its own range.
"""

from __future__ import annotations

from django.urls import reverse

from comfyweb import live, topics
from teams.models import Team

TOPIC = "team-usage"
TARGET = "usage-report"


def usage_changed(team_id: int) -> None:
    live.publish_refresh(TOPIC, TARGET, reverse("accounting:report"), key=str(team_id))


def _allowed(user, key: str | None) -> bool:
    return key is not None and key.isdigit() and Team.objects.for_user(user).filter(pk=key).exists()


topic = topics.Topic(
    name=TOPIC,
    allowed=_allowed,
    # The page's report is fetched on subscribe (data-refresh-on-subscribe): its range is its own.
    snapshot=lambda user, key: [],
)
