from __future__ import annotations

from django.apps import AppConfig


class FairnessConfig(AppConfig):
    """Priority aging and per-team/per-user limits on queued and running tasks."""

    name = "fairness"
    default_auto_field = "django.db.models.BigAutoField"
