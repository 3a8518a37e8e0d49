from __future__ import annotations

from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "webhooks"
    verbose_name = "Webhooks"

    def ready(self) -> None:
        # The tasks app announces state changes; webhooks listens (it never imports
        # the other way), so a transition knows nothing of outbound HTTP.
        from comfyweb import topics
        from tasks.transitions import task_transitioned
        from webhooks import events, live

        task_transitioned.connect(events.on_task_transitioned, dispatch_uid="webhooks.events")
        topics.register(live.topic)
