"""URLs of the tasks app (namespace "tasks"): submitting, the task and batch pages
(retry, run again, cancel), the gallery and the queue controls."""

from __future__ import annotations

from django.urls import path

from tasks.views import batches, eta, gallery, pictures, queue, rerun, rows, submit, tasks

app_name = "tasks"
urlpatterns = [
    path("workflows/<int:pk>/run/", submit.workflow_run, name="workflow_run"),
    # A template's page is its submit form; the task pages link it by either name.
    path("templates/<int:pk>/", submit.template_submit, name="template_detail"),
    path("templates/<int:pk>/submit/", submit.template_submit, name="template_submit"),
    path("tasks/", tasks.task_list, name="tasks"),
    path("tasks/<int:task_id>/", tasks.task_detail, name="task_detail"),
    path("tasks/<int:task_id>/cancel/", tasks.task_cancel, name="task_cancel"),
    path("tasks/<int:task_id>/preview/", tasks.task_preview, name="task_preview"),
    path("tasks/<int:task_id>/retry/", rerun.task_retry, name="task_retry"),
    path("tasks/<int:task_id>/run-again/", rerun.task_run_again, name="task_run_again"),
    path("tasks/eta/", eta.eta_parts, name="eta_parts"),
    path("tasks/rows/", rows.row_parts, name="row_parts"),
    path("tasks/batches/<int:batch_id>/", batches.batch_detail, name="batch_detail"),
    path("tasks/batches/<int:batch_id>/cancel/", batches.batch_cancel, name="batch_cancel"),
    path("tasks/batches/<int:batch_id>/retry/", rerun.batch_retry, name="batch_retry"),
    path("tasks/batches/<int:batch_id>/run-again/", rerun.batch_run_again, name="batch_run_again"),
    path("outputs/<int:output_id>/file/", tasks.output_file, name="output_file"),
    path("outputs/<int:output_id>/thumbnail/", tasks.output_thumbnail, name="output_thumbnail"),
    path("gallery/", gallery.gallery, name="gallery"),
    path("gallery/<int:pk>/", gallery.output_detail, name="output_detail"),
    path("gallery/items/", gallery.gallery_items, name="gallery_items"),
    path("gallery/zip/", gallery.gallery_zip, name="gallery_zip"),
    path("results/recent/", pictures.recent_results, name="recent_results"),
    path("queue/panel", queue.panel, name="queue_panel"),
    path("queue/pause", queue.pause, name="queue_pause"),
    path("queue/resume", queue.resume, name="queue_resume"),
    path("queue/clear", queue.clear, name="queue_clear"),
]
