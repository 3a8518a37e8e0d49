from __future__ import annotations

from django.contrib import admin

from tasks.models import Batch, Output, QueuePause, Task, TaskEvent


class TaskEventInline(admin.TabularInline):
    model = TaskEvent
    extra = 0
    can_delete = False
    readonly_fields = ["at", "from_status", "to_status", "message", "data"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class OutputInline(admin.TabularInline):
    model = Output
    extra = 0
    can_delete = False
    fields = ["file", "content_type", "width", "height", "size", "node_id"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    """Tasks change state only through the queue services, so the admin reads."""

    list_display = ["id", "team", "status", "priority", "server", "attempts", "created_at"]
    list_filter = ["status", "priority", "error_class", "team", "server"]
    search_fields = ["id", "prompt_id", "error_message"]
    date_hierarchy = "created_at"
    list_select_related = ["team", "server"]
    inlines = [TaskEventInline, OutputInline]

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in Task._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(Batch)
class BatchAdmin(admin.ModelAdmin):
    list_display = ["id", "team", "description", "created_at"]
    list_filter = ["team"]


@admin.register(Output)
class OutputAdmin(admin.ModelAdmin):
    list_display = ["id", "task", "team", "content_type", "width", "height", "size", "created_at"]
    list_filter = ["team", "content_type"]
    readonly_fields = [
        "task", "team", "file", "thumbnail", "original_name", "content_type",
        "width", "height", "size", "node_id", "metadata", "created_at",
    ]  # fmt: skip

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(QueuePause)
class QueuePauseAdmin(admin.ModelAdmin):
    list_display = ["scope", "team", "paused_by", "paused_at", "reason"]
