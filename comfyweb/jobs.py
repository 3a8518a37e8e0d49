"""Background jobs of the comfyweb app (django-q2, queued by dotted path)."""

from __future__ import annotations

from comfyweb import health, health_panel


def publish_health() -> str:
    """Push the current health panel to every dashboard; runs on a schedule."""
    report = health.collect()
    health_panel.publish(report)
    return report.status
