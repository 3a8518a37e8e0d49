"""Live expected times (on `comfyweb.live`): topic "eta", no key.

Any task changing state moves the queue, so every shown estimate may change:
each change broadcasts one refresh hint, and each page fetches its own
estimates again (`tasks.views.eta`, the ids it shows in its `eta-refresh`
element's `data-refresh-url`), at most once a second. Between hints the times
count down in the browser (`static/js/times.js`).
"""

from __future__ import annotations

from django.urls import reverse

from comfyweb import live, topics

TOPIC = "eta"
TARGET = "eta-refresh"


def refresh_browsers(**signal_kwargs) -> None:
    """Connected to `task_transitioned` and queue pauses: pages fetch their estimates."""
    live.publish_refresh(TOPIC, TARGET, reverse("tasks:eta_parts"))


topic = topics.Topic(
    name=TOPIC,
    allowed=lambda user, key: key is None and user.is_authenticated and user.is_active,
    snapshot=lambda user, key: [],  # the page was rendered with its estimates
)
