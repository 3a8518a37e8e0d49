"""URLs of the workflows app (namespace "workflows"): workflows and templates.

Running them is the tasks app's (tasks/urls.py: `workflow_run`, and a template's
page, which is its submit form).
"""

from __future__ import annotations

from django.urls import path

from workflows.views import generate, templates, workflows

app_name = "workflows"
urlpatterns = [
    path("generate/", generate.generate, name="generate"),
    path("workflows/", workflows.workflow_list, name="workflows"),
    path("workflows/new/", workflows.workflow_create, name="workflow_create"),
    path("workflows/<int:pk>/", workflows.workflow_detail, name="workflow_detail"),
    path("workflows/<int:pk>/edit/", workflows.workflow_edit, name="workflow_edit"),
    path("workflows/<int:pk>/delete/", workflows.workflow_delete, name="workflow_delete"),
    path("workflows/<int:pk>/validate/", workflows.workflow_validate, name="workflow_validate"),
    path("workflows/<int:pk>/templates/new/", templates.template_create, name="template_create"),
    path("templates/", templates.template_list, name="templates"),
    path("templates/<int:pk>/edit/", templates.template_edit, name="template_edit"),
    path("templates/<int:pk>/delete/", templates.template_delete, name="template_delete"),
]
