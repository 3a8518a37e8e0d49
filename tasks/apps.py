from __future__ import annotations

from django.apps import AppConfig


class TasksConfig(AppConfig):
    name = "tasks"
    verbose_name = "Work"

    def ready(self) -> None:
        from django.urls import reverse

        from comfyweb import topics
        from comfyweb.signals import cluster_started, monitor_started
        from servers import status_panel
        from servers.monitor import work
        from tasks import (
            batch_updates,
            dispatch_here,
            enqueue,
            eta_updates,
            pictures,
            queue,
            queue_panel,
            task_updates,
        )
        from tasks.execution import TaskEventHandler
        from tasks.transitions import task_transitioned

        topics.register(task_updates.task_topic)
        topics.register(task_updates.team_tasks_topic)
        topics.register(queue_panel.topic)
        topics.register(pictures.topic)
        topics.register(batch_updates.topic)
        topics.register(eta_updates.topic)
        # The fleet panels show a server's active tasks, and the dashboard's comes
        # with the queue panel (tasks/queue_panel.py).
        status_panel.use_work_source(
            status_panel.WorkSource(
                work=queue.server_work,
                panels_url=lambda: reverse("tasks:queue_panel"),
            )
        )
        # The monitor hands execution events and its wake-ups to the tasks' handler.
        work.register(TaskEventHandler)
        cluster_started.connect(enqueue.cluster_started, dispatch_uid="tasks.cluster_started")
        # The monitor sees slots free first: it dispatches itself (tasks/dispatch_here.py).
        monitor_started.connect(dispatch_here.start, dispatch_uid="tasks.dispatch_here")
        task_transitioned.connect(
            task_updates.on_task_transitioned, dispatch_uid="tasks.task_updates"
        )
        task_transitioned.connect(queue_panel.refresh_browsers, dispatch_uid="tasks.queue_panel")
        task_transitioned.connect(eta_updates.refresh_browsers, dispatch_uid="tasks.eta_updates")
        task_transitioned.connect(pictures.on_task_transitioned, dispatch_uid="tasks.pictures")
        task_transitioned.connect(
            batch_updates.on_task_transitioned, dispatch_uid="tasks.batch_updates"
        )
        task_transitioned.connect(
            enqueue.container_slot_freed, dispatch_uid="tasks.container_slot_freed"
        )
        queue.pause_changed.connect(queue_panel.refresh_browsers, dispatch_uid="tasks.queue_pause")
        queue.pause_changed.connect(eta_updates.refresh_browsers, dispatch_uid="tasks.eta_pause")
