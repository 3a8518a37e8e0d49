from __future__ import annotations

from django.apps import AppConfig


class AccountingConfig(AppConfig):
    name = "accounting"
    verbose_name = "GPU-time accounting"

    def ready(self) -> None:
        from accounting import recording, usage_updates
        from comfyweb import topics
        from tasks.transitions import task_transitioned

        topics.register(usage_updates.topic)
        task_transitioned.connect(recording.on_task_transitioned, dispatch_uid="accounting.usage")
