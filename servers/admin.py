from __future__ import annotations

from asgiref.sync import async_to_sync
from django.contrib import admin, messages
from django.http import HttpRequest
from django.shortcuts import redirect

from servers.containers import admin as containers_admin  # noqa: F401 (registers them)
from servers.models import (
    BalancerDecision,
    FailureRecord,
    FleetSettings,
    Server,
    ServerLease,
    ServerSpeed,
    ServerState,
)
from servers.probe import probe_many


class ServerStateInline(admin.StackedInline):
    """What the monitor observed; read-only here because only the monitor writes it."""

    model = ServerState
    can_delete = False
    extra = 0
    exclude = ["node_classes", "model_files", "event_stats"]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in ServerState._meta.fields if f.name not in self.exclude]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Server)
class ServerAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "kind",
        "base_url",
        "enabled",
        "health",
        "is_primary",
        "priority",
        "weight",
        "max_inflight",
    ]
    list_filter = ["enabled", "kind", "is_primary", "state__health"]
    list_editable = ["enabled", "priority", "weight", "max_inflight"]
    search_fields = ["name", "base_url"]
    inlines = [ServerStateInline]
    actions = ["test_servers", "enable_servers", "disable_servers"]
    fieldsets = [
        (None, {"fields": ["name", "base_url", "kind", "enabled", "is_primary"]}),
        ("Balancing", {"fields": ["priority", "weight", "max_inflight", "tags"]}),
        ("Access", {"fields": ["auth_headers"], "classes": ["collapse"]}),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("state")

    @admin.display(description="Health", ordering="state__health")
    def health(self, server: Server) -> str:
        return server.state.get_health_display() if hasattr(server, "state") else "—"

    @admin.action(description="Test selected servers now (health + queue)")
    def test_servers(self, request: HttpRequest, queryset) -> None:
        servers = list(queryset)
        results = async_to_sync(probe_many)(servers)
        for server in servers:
            result = results[server.pk]
            if result.ok and not result.error:
                self.message_user(
                    request,
                    f"{server.name}: healthy, {result.response_ms:.0f} ms, "
                    f"queue {result.queue_running}+{result.queue_pending}",
                    messages.SUCCESS,
                )
            else:
                level = messages.WARNING if result.ok else messages.ERROR
                self.message_user(request, f"{server.name}: {result.error}", level)

    @admin.action(description="Enable selected servers")
    def enable_servers(self, request: HttpRequest, queryset) -> None:
        self.message_user(request, f"Enabled {queryset.update(enabled=True)} server(s).")

    @admin.action(description="Disable selected servers")
    def disable_servers(self, request: HttpRequest, queryset) -> None:
        self.message_user(request, f"Disabled {queryset.update(enabled=False)} server(s).")


class RecordAdmin(admin.ModelAdmin):
    """A log the fleet writes: staff read and delete its rows, never add or edit them."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(FailureRecord)
class FailureRecordAdmin(RecordAdmin):
    list_display = ["at", "server", "kind", "reason", "marked_unhealthy", "recovered_at"]
    list_filter = ["kind", "marked_unhealthy", "server"]
    search_fields = ["reason", "server__name"]
    date_hierarchy = "at"


@admin.register(BalancerDecision)
class BalancerDecisionAdmin(RecordAdmin):
    list_display = ["at", "chosen", "mode", "reason", "candidates_total", "excluded_total"]
    list_filter = ["mode", "chosen"]


@admin.register(ServerSpeed)
class ServerSpeedAdmin(RecordAdmin):
    list_display = [
        "server",
        "key",
        "seconds_per_unit",
        "last_seconds_per_unit",
        "samples",
        "updated_at",
    ]
    list_filter = ["server"]
    search_fields = ["key", "server__name"]


@admin.register(ServerLease)
class ServerLeaseAdmin(RecordAdmin):
    """Which monitor watches which server (servers/monitor/leases.py). A row deleted
    here is only made again, free, by the monitors' next tick."""

    list_display = ["server", "monitor_id", "expires_at", "acquired_at"]
    list_filter = ["monitor_id"]
    search_fields = ["server__name", "monitor_id"]
    list_select_related = ["server"]


@admin.register(FleetSettings)
class FleetSettingsAdmin(admin.ModelAdmin):
    """A singleton: the list page goes straight to the one row."""

    fieldsets = [
        ("Failover", {"fields": ["auto_switch", "affinity_window"]}),
        (
            "Health checks",
            {
                "fields": [
                    "health_interval",
                    "health_timeout",
                    "queue_timeout",
                    "failures_before_unhealthy",
                    "recheck_backoff_base",
                    "recheck_backoff_cap",
                ]
            },
        ),
        ("Caches", {"fields": ["load_cache_age", "capabilities_ttl"]}),
    ]

    def changelist_view(self, request, extra_context=None):
        return redirect("admin:servers_fleetsettings_change", FleetSettings.load().pk)

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
