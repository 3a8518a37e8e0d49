"""URLs of the tasks app (namespace "tasks"), one module per area so areas grow apart."""

from __future__ import annotations

from tasks.urls_gallery import urlpatterns as gallery
from tasks.urls_queue import urlpatterns as queue_controls
from tasks.urls_tasks import urlpatterns as task_pages
from tasks.urls_workflows import urlpatterns as workflows

app_name = "tasks"
urlpatterns = [*workflows, *task_pages, *gallery, *queue_controls]
