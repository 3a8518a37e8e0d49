from __future__ import annotations

from django.apps import AppConfig, apps
from django.db.models.signals import post_migrate


class ComfyWebConfig(AppConfig):
    name = "comfyweb"
    verbose_name = "ComfyWeb"

    def ready(self) -> None:
        from comfyweb import health_panel, job_names, schedules, topics

        topics.register(health_panel.topic)
        job_names.rename()
        # Not sender=self: migrate signals only apps that have models, and this one
        # has none. The schedules are django_q's rows, made once its tables exist.
        post_migrate.connect(
            schedules.ensure_schedules,
            sender=apps.get_app_config("django_q"),
            dispatch_uid="comfyweb.ensure_schedules",
        )
