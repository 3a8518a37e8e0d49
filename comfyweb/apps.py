from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ComfyWebConfig(AppConfig):
    name = "comfyweb"
    verbose_name = "ComfyWeb"

    def ready(self) -> None:
        from comfyweb import health_panel, schedules, topics

        topics.register(health_panel.topic)
        post_migrate.connect(schedules.ensure_schedules, sender=self)
