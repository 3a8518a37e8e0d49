"""URLs of the workflows area (included by tasks/urls.py, namespace "tasks")."""

from __future__ import annotations

from django.urls import path

from tasks.views import templates_views, workflows

urlpatterns = [
    path("workflows/", workflows.workflow_list, name="workflows"),
    path("workflows/new/", workflows.workflow_create, name="workflow_create"),
    path("workflows/<int:pk>/", workflows.workflow_detail, name="workflow_detail"),
    path("workflows/<int:pk>/edit/", workflows.workflow_edit, name="workflow_edit"),
    path("workflows/<int:pk>/delete/", workflows.workflow_delete, name="workflow_delete"),
    path("workflows/<int:pk>/validate/", workflows.workflow_validate, name="workflow_validate"),
    path("workflows/<int:pk>/run/", workflows.workflow_run, name="workflow_run"),
    path(
        "workflows/<int:pk>/templates/new/",
        templates_views.template_create,
        name="template_create",
    ),
    path("templates/", templates_views.template_list, name="templates"),
    path("templates/<int:pk>/", templates_views.template_submit, name="template_detail"),
    # The submit form is the template's page; the task pages link it by this name.
    path("templates/<int:pk>/submit/", templates_views.template_submit, name="template_submit"),
    path("templates/<int:pk>/edit/", templates_views.template_edit, name="template_edit"),
    path("templates/<int:pk>/delete/", templates_views.template_delete, name="template_delete"),
]
