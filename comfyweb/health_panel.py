"""The dashboard's health panel as a live topic: rendered here, pushed by `live`."""

from __future__ import annotations

from django.template.loader import render_to_string

from comfyweb import health, live, topics

TOPIC = "health"
TARGET = "health-panel"


def render(report: health.HealthReport | None = None) -> str:
    report = report or health.collect()
    return render_to_string("comfyweb/dashboard.html#health-panel", {"health": report})


def publish(report: health.HealthReport | None = None) -> None:
    live.publish_fragment(TOPIC, TARGET, render(report))


topic = topics.Topic(
    name=TOPIC,
    allowed=lambda user, key: key is None and user.is_authenticated and user.is_active,
    snapshot=lambda user, key: [(TARGET, render())],
)
