"""The admin for Docker hosts, container pools and containers (imported by servers/admin.py).

Hosts and pools are configured here. A host's engine id, version, status and error
are what the last check saw: read-only, as are what the scheduler writes on a pool
(its desired size, decision, crash backoff, remembered node classes) and its
scaling decisions. Containers are the scheduler's record, so staff read them and
never add or edit one by hand.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Count, F, Q, Window
from django.db.models.functions import RowNumber
from django.http import HttpRequest

from servers.containers.engines import check_host
from servers.containers.models import (
    Container,
    ContainerPool,
    DockerHost,
    HostStatus,
    ScalingDecision,
)

HOLDING = Q(containers__stopped_at__isnull=True)
# A pool's fields the scheduler (servers.containers.tending) writes: read, never edited.
SCHEDULER_FIELDS = [
    "desired_size",
    "decision",
    "decided_at",
    "failures_in_row",
    "backoff_until",
    "node_classes",
]


@admin.register(DockerHost)
class DockerHostAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "docker_url",
        "publish_address",
        "ports",
        "gpu_list",
        "library",
        "enabled",
        "status",
        "engine_version",
        "containers",
        "checked_at",
    ]
    list_filter = ["enabled", "status"]
    search_fields = ["name", "docker_url", "engine_id"]
    readonly_fields = ["engine_id", "engine_version", "status", "error", "checked_at"]
    actions = ["check_hosts"]
    fieldsets = [
        (None, {"fields": ["name", "docker_url", "publish_address", "enabled"]}),
        ("What containers get", {"fields": ["port_min", "port_max", "gpus", "models_dir"]}),
        ("Last check", {"fields": readonly_fields}),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(held=Count("containers", filter=HOLDING))

    @admin.action(description="Check selected hosts now (docker info)")
    def check_hosts(self, request: HttpRequest, queryset) -> None:
        for host in queryset:
            check_host(host)
            if host.status == HostStatus.OK:
                self.message_user(
                    request,
                    f"{host.name}: Docker {host.engine_version}, engine {host.engine_id}",
                    messages.SUCCESS,
                )
            else:
                self.message_user(request, f"{host.name}: {host.error}", messages.ERROR)

    @admin.display(description="Ports")
    def ports(self, host: DockerHost) -> str:
        return f"{host.port_min}-{host.port_max}"

    @admin.display(description="GPUs")
    def gpu_list(self, host: DockerHost) -> str:
        return ", ".join(host.gpus) or "—"

    @admin.display(description="Models library")
    def library(self, host: DockerHost) -> str:
        return host.library_dir or "not mounted (tcp: no models directory)"

    @admin.display(description="Containers", ordering="held")
    def containers(self, host: DockerHost) -> int:
        return host.held


class ScalingDecisionInline(admin.TabularInline):
    """The pool's last few scaling decisions, newest first (its page shows more)."""

    model = ScalingDecision
    SHOWN = 10
    fields = ["at", "desired", "live", "work", "action", "reason"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = f"Recent scaling decisions (last {SHOWN})"

    def get_queryset(self, request):
        # The formset filters by pool after this, so the limit is per pool, by rank.
        rank = Window(
            RowNumber(), partition_by=F("pool"), order_by=[F("at").desc(), F("pk").desc()]
        )
        return super().get_queryset(request).annotate(rank=rank).filter(rank__lte=self.SHOWN)

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ContainerPool)
class ContainerPoolAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "image",
        "enabled",
        "sizes",
        "jobs_per_container",
        "gpus_per_container",
        "idle_seconds",
        "containers",
    ]
    list_filter = ["enabled", "hosts"]
    search_fields = ["name", "image"]
    filter_horizontal = ["hosts"]
    fieldsets = [
        (None, {"fields": ["name", "image", "enabled"]}),
        (
            "Container",
            {"fields": ["command", "environment", "volumes", "models_mount", "container_port"]},
        ),
        (
            "Size",
            {
                "fields": [
                    "min_size",
                    "max_size",
                    "pinned_size",
                    "jobs_per_container",
                    "idle_seconds",
                ]
            },
        ),
        ("Placement", {"fields": ["hosts", "gpus_per_container"]}),
        ("What the scheduler decided", {"fields": SCHEDULER_FIELDS}),
    ]
    readonly_fields = SCHEDULER_FIELDS
    inlines = [ScalingDecisionInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(held=Count("containers", filter=HOLDING))

    @admin.display(description="Size (min-max)")
    def sizes(self, pool: ContainerPool) -> str:
        return f"{pool.min_size}-{pool.max_size}"

    @admin.display(description="Containers", ordering="held")
    def containers(self, pool: ContainerPool) -> int:
        return pool.held


@admin.register(Container)
class ContainerAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "pool",
        "host",
        "port",
        "gpu_list",
        "state",
        "server",
        "short_id",
        "created_at",
        "stop_reason",
        "stopped_at",
    ]
    list_filter = ["state", "pool", "host", ("stopped_at", admin.EmptyFieldListFilter)]
    list_select_related = ["pool", "host", "server"]
    search_fields = ["docker_id", "pool__name", "host__name", "error"]
    date_hierarchy = "created_at"
    # Read-only like every field here (no change permission), named so they show.
    readonly_fields = ["stop_reason", "stop_requested_at", "idle_since"]

    @admin.display(description="GPUs")
    def gpu_list(self, container: Container) -> str:
        return ", ".join(container.gpus) or "—"

    @admin.display(description="Docker id", ordering="docker_id")
    def short_id(self, container: Container) -> str:
        return container.docker_id[:12] or "—"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
