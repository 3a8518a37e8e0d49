from __future__ import annotations

from django.contrib import admin

from accounting.models import ServerCost, TeamQuota, Usage


@admin.register(ServerCost)
class ServerCostAdmin(admin.ModelAdmin):
    list_display = ("server", "weight")
    list_editable = ("weight",)
    search_fields = ("server__name",)


@admin.register(TeamQuota)
class TeamQuotaAdmin(admin.ModelAdmin):
    list_display = ("team", "soft_gpu_seconds", "hard_gpu_seconds")
    search_fields = ("team__name",)


@admin.register(Usage)
class UsageAdmin(admin.ModelAdmin):
    """The bill is written by the accounting hook only: read here, never edited."""

    list_display = (
        "task_ref",
        "attempt",
        "team",
        "username",
        "server_name",
        "workflow",
        "outcome",
        "seconds",
        "weight",
        "gpu_seconds",
        "day",
    )
    list_filter = ("team", "day", "outcome")
    search_fields = ("workflow", "username", "server_name", "task_ref")
    date_hierarchy = "day"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
