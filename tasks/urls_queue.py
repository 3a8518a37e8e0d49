"""URLs of the queue controls (included by tasks/urls.py, namespace "tasks")."""

from __future__ import annotations

from django.urls import path

from tasks.views import queue

urlpatterns = [
    path("queue/panel", queue.panel, name="queue_panel"),
    path("queue/pause", queue.pause, name="queue_pause"),
    path("queue/resume", queue.resume, name="queue_resume"),
    path("queue/clear", queue.clear, name="queue_clear"),
]
