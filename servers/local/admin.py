"""The admin for local ComfyUI instances (registered by servers.apps).

Staff configure an install here and start, stop or restart it with the actions,
which only say what they want and wake the launcher. What the launcher writes
(state, pid, restarts, error, ...) is read-only, and saving a form writes only
the configuration, so it never puts back a state older than the launcher's.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from servers.local import control
from servers.local.models import CONFIGURATION_FIELDS, LocalInstance

# Written by the launcher (and by the actions, for `wanted`): read here, never edited.
OBSERVATION = [
    "wanted",
    "state",
    "error",
    "pid",
    "process_started",
    "started_at",
    "exited_at",
    "exit_code",
    "next_start_at",
    "restarts",
    "consecutive_crashes",
    "server",
    "log_path",
]


@admin.register(LocalInstance)
class LocalInstanceAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "page",
        "state",
        "wanted",
        "port",
        "pid",
        "restarts",
        "server",
        "autostart",
        "auto_restart",
        "started_at",
    ]
    list_filter = ["state", "wanted", "autostart"]
    search_fields = ["name", "comfyui_dir", "start_script"]
    readonly_fields = OBSERVATION
    actions = ["start", "stop", "restart"]
    fieldsets = [
        (None, {"fields": ["name", "comfyui_dir", "start_script", "python", "port"]}),
        ("How it runs", {"fields": ["args", "environment", "gpus", "autostart", "auto_restart"]}),
        ("What the launcher saw", {"fields": OBSERVATION}),
    ]

    @admin.display(description="Page")
    def page(self, instance: LocalInstance) -> str:
        url = reverse("servers:local", args=[instance.pk])
        return format_html('<a href="{}">status and console</a>', url)

    def save_model(self, request: HttpRequest, obj: LocalInstance, form, change: bool) -> None:
        if change:
            obj.save(update_fields=CONFIGURATION_FIELDS)
        else:
            obj.save()

    def delete_model(self, request: HttpRequest, obj: LocalInstance) -> None:
        control.delete_instance(obj)

    def delete_queryset(self, request: HttpRequest, queryset) -> None:
        for instance in queryset:
            control.delete_instance(instance)

    def _ask(self, request: HttpRequest, queryset, ask, done: str) -> None:
        names = []
        for instance in queryset:
            ask(instance)
            names.append(instance.name)
        self.message_user(request, f"{done}: {', '.join(names)}", messages.SUCCESS)

    @admin.action(description="Start selected instances")
    def start(self, request: HttpRequest, queryset) -> None:
        self._ask(request, queryset, control.request_start, "Starting")

    @admin.action(description="Stop selected instances")
    def stop(self, request: HttpRequest, queryset) -> None:
        self._ask(request, queryset, control.request_stop, "Stopping")

    @admin.action(description="Restart selected instances")
    def restart(self, request: HttpRequest, queryset) -> None:
        self._ask(request, queryset, control.request_restart, "Restarting")
