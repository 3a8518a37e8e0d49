from __future__ import annotations

from django.apps import AppConfig


class TasksConfig(AppConfig):
    name = "tasks"
    verbose_name = "Work"

    def ready(self) -> None:
        from comfyweb import topics
        from tasks import publish
        from tasks.transitions import task_transitioned

        topics.register(publish.task_topic)
        topics.register(publish.team_tasks_topic)
        task_transitioned.connect(publish.on_task_transitioned, dispatch_uid="tasks.publish")
