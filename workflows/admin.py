"""Admin of workflows and templates: versions read-only, parameters inline."""

from __future__ import annotations

import json

from django.contrib import admin
from django.db.models import Count, QuerySet
from django.utils.html import format_html

from workflows.models import Template, TemplateParameter, Workflow, WorkflowVersion


class WorkflowVersionInline(admin.TabularInline):
    """Versions are immutable: shown, never edited here (a new graph is a new version)."""

    model = WorkflowVersion
    extra = 0
    can_delete = False
    show_change_link = True
    fields = [
        "number",
        "note",
        "node_classes",
        "model_files",
        "workflow_key",
        "created_by",
        "created_at",
    ]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Workflow)
class WorkflowAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "current_version", "version_count", "updated_at"]
    list_filter = ["team"]
    search_fields = ["name", "description", "current_version__node_classes"]
    # Listed to keep the change form's order: the model has TeamNamedModel's fields first.
    fields = [
        "team",
        "name",
        "description",
        "tags",
        "current_version",
        "created_by",
        "created_at",
        "updated_at",
    ]
    readonly_fields = ["current_version", "created_by", "created_at", "updated_at"]
    inlines = [WorkflowVersionInline]

    def get_queryset(self, request) -> QuerySet[Workflow]:
        return (
            super()
            .get_queryset(request)
            .select_related("team", "current_version")
            .annotate(version_total=Count("versions"))
        )

    @admin.display(description="Versions", ordering="version_total")
    def version_count(self, workflow: Workflow) -> int:
        return workflow.version_total


@admin.register(WorkflowVersion)
class WorkflowVersionAdmin(admin.ModelAdmin):
    list_display = ["__str__", "number", "workflow_key", "created_at"]
    list_filter = ["workflow__team"]
    search_fields = ["workflow__name", "workflow_key"]
    readonly_fields = [
        "workflow",
        "number",
        "graph_json",
        "node_classes",
        "model_files",
        "workflow_key",
        "note",
        "created_by",
        "created_at",
    ]
    exclude = ["graph"]

    def has_add_permission(self, request) -> bool:
        return False  # versions are made by editing the workflow's graph

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Graph")
    def graph_json(self, version: WorkflowVersion) -> str:
        return format_html("<pre>{}</pre>", json.dumps(version.graph, indent=2))


class TemplateParameterInline(admin.TabularInline):
    model = TemplateParameter
    extra = 0
    fields = [
        "position",
        "name",
        "label",
        "type",
        "node_id",
        "input_name",
        "default",
        "minimum",
        "maximum",
        "choices",
        "help",
    ]


@admin.register(Template)
class TemplateAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "workflow_version", "parameter_count", "updated_at"]
    list_filter = ["team"]
    search_fields = ["name", "description", "workflow_version__workflow__name"]
    raw_id_fields = ["workflow_version"]
    fields = [  # in the change form's order, as on WorkflowAdmin
        "team",
        "workflow_version",
        "name",
        "description",
        "created_by",
        "created_at",
        "updated_at",
    ]
    readonly_fields = ["created_by", "created_at", "updated_at"]
    inlines = [TemplateParameterInline]

    def get_queryset(self, request) -> QuerySet[Template]:
        return (
            super()
            .get_queryset(request)
            .select_related("team", "workflow_version__workflow")
            .annotate(parameter_total=Count("parameters"))
        )

    @admin.display(description="Parameters", ordering="parameter_total")
    def parameter_count(self, template: Template) -> int:
        return template.parameter_total
