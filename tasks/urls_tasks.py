"""URLs of the tasks area (included by tasks/urls.py, namespace "tasks")."""

from __future__ import annotations

from django.urls import path

from tasks.views import tasks

urlpatterns: list = [
    path("tasks/", tasks.task_list, name="tasks"),
    path("tasks/<int:task_id>/", tasks.task_detail, name="task_detail"),
    path("tasks/<int:task_id>/cancel/", tasks.task_cancel, name="task_cancel"),
    path("tasks/<int:task_id>/preview/", tasks.task_preview, name="task_preview"),
    path("tasks/batches/<int:batch_id>/cancel/", tasks.batch_cancel, name="batch_cancel"),
    path("outputs/<int:output_id>/file/", tasks.output_file, name="output_file"),
    path("outputs/<int:output_id>/thumbnail/", tasks.output_thumbnail, name="output_thumbnail"),
]
