from __future__ import annotations

from django.contrib import admin

from onboarding.models import ChecklistDismissal


@admin.register(ChecklistDismissal)
class ChecklistDismissalAdmin(admin.ModelAdmin):
    """Delete a row to show a user their first-run checklist again."""

    list_display = ["user", "dismissed_at"]
    search_fields = ["user__username"]
    readonly_fields = ["user", "dismissed_at"]

    def has_add_permission(self, request) -> bool:
        return False  # made by the dashboard's Dismiss button only
