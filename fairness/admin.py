from __future__ import annotations

from django.contrib import admin

from fairness.models import TeamLimits, UserLimit


@admin.register(TeamLimits)
class TeamLimitsAdmin(admin.ModelAdmin):
    list_display = [
        "team",
        "max_running",
        "max_queued",
        "user_max_running",
        "user_max_queued",
        "updated_at",
    ]
    search_fields = ["team__name", "team__slug"]
    autocomplete_fields = ["team"]


@admin.register(UserLimit)
class UserLimitAdmin(admin.ModelAdmin):
    list_display = ["user", "team", "max_running", "max_queued"]
    list_filter = ["team"]
    search_fields = ["user__username", "team__name"]
    autocomplete_fields = ["team", "user"]
