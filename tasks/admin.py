from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import Count, QuerySet

from tasks.models import Batch, Membership, Output, QueuePause, Task, TaskEvent, Team


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ["user"]


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "member_count", "created_at"]
    search_fields = ["name", "slug", "memberships__user__username"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]

    def get_queryset(self, request) -> QuerySet[Team]:
        return super().get_queryset(request).annotate(member_total=Count("memberships"))

    @admin.display(description="Members", ordering="member_total")
    def member_count(self, team: Team) -> int:
        return team.member_total


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "team", "role", "joined_at"]
    list_filter = ["role", "team"]
    search_fields = ["user__username", "team__name"]
    autocomplete_fields = ["user", "team"]


class UserMembershipInline(admin.TabularInline):
    model = Membership
    fk_name = "user"
    extra = 0
    autocomplete_fields = ["team"]
    verbose_name = "team membership"


# Team roles are edited from the user's page too, where admins create accounts.
User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class UserWithTeamsAdmin(UserAdmin):
    inlines = [*UserAdmin.inlines, UserMembershipInline]


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
    list_filter = ["status", "priority", "team", "server"]
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


from tasks import admin_workflows  # noqa: E402, F401
