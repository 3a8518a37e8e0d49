"""The fleet: ComfyUI servers, what we know about them, and how they are balanced.

`Server` is configuration (admins edit it); `ServerState` is observation (only
the monitor and dispatch write it, with `update()`), kept apart so an admin
saving a form never overwrites fresh health data and vice versa.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from servers.balancer import affinity_key

# The containers ComfyWeb makes (issue #13) have a package of their own; importing
# their models here makes them models of this app.
from servers.containers.models import (  # noqa: F401
    Container,
    ContainerPool,
    DockerHost,
    GpuReservation,
    ScalingDecision,
)

# So are the local ComfyUI installs it launches (issue #14).
from servers.local.models import LocalInstance, LocalState


class ServerKind(models.TextChoices):
    STATIC = "static", "Fixed server"
    SIMULATED = "simulated", "Simulated (demo)"
    CONTAINER = "container", "Docker container"
    LOCAL = "local", "Local install"


class Health(models.TextChoices):
    HEALTHY = "healthy", "Healthy"
    UNHEALTHY = "unhealthy", "Unhealthy"
    UNKNOWN = "unknown", "Unknown"


def validate_base_url(value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValidationError("Enter the server's base URL, e.g. http://gpu-1.internal:8188")
    if parts.query or parts.fragment:
        raise ValidationError("The base URL takes no query string or fragment.")


def validate_headers(value: object) -> None:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValidationError('Headers are a JSON object of strings: {"Authorization": "..."}')


def validate_tags(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(tag, str) and tag for tag in value):
        raise ValidationError('Tags are a JSON list of words: ["sdxl", "a100"]')


def _running_local_servers() -> models.QuerySet:
    # No NULL in the list: `NOT IN` a list holding NULL is never true in SQL.
    running = LocalInstance.objects.filter(state=LocalState.RUNNING, server__isnull=False)
    return running.values("server")


class ServerQuerySet(models.QuerySet):
    def enabled(self) -> ServerQuerySet:
        return self.filter(enabled=True)

    def in_fleet(self) -> ServerQuerySet:
        """Every server but those of containers that are gone and of local instances
        that are not running (their rows stay, for the tasks that ran there): what the
        servers page and the API list."""
        return self.exclude(
            Q(kind=ServerKind.CONTAINER)
            & (Q(container__isnull=True) | Q(container__stopped_at__isnull=False))
        ).exclude(Q(kind=ServerKind.LOCAL) & ~Q(pk__in=_running_local_servers()))


class Server(models.Model):
    name = models.CharField(max_length=100, unique=True)
    base_url = models.CharField(
        "base URL", max_length=300, validators=[validate_base_url], help_text="http://host:8188"
    )
    enabled = models.BooleanField(default=True)
    kind = models.CharField(max_length=12, choices=ServerKind.choices, default=ServerKind.STATIC)
    priority = models.IntegerField(
        default=100, help_text="Breaks ties between equally loaded servers: lower goes first."
    )
    weight = models.FloatField(
        default=1.0,
        validators=[MinValueValidator(0.01)],
        help_text="Relative speed: a server with weight 2 takes twice the load of weight 1.",
    )
    max_inflight = models.PositiveSmallIntegerField(
        "max in flight",
        default=2,
        validators=[MinValueValidator(1)],
        help_text="Prompts ComfyWeb keeps on this server at once (one running, one ready).",
    )
    is_primary = models.BooleanField(
        "primary",
        default=False,
        help_text="Used alone when health data is stale (the monitor is down).",
    )
    draining = models.BooleanField(
        default=False,
        help_text="Takes no new prompts and finishes those it has (a container about to go).",
    )
    tags = models.JSONField(default=list, blank=True, validators=[validate_tags])
    auth_headers = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_headers],
        help_text="Extra HTTP headers for a ComfyUI behind a reverse proxy.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ServerQuerySet.as_manager()

    class Meta:
        ordering = ["priority", "name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        self.base_url = self.base_url.rstrip("/")
        # One transaction: no other process sees a server without its state row
        # (pages and the monitor's publishes read `server.state`).
        with transaction.atomic():
            super().save(*args, **kwargs)
            ServerState.objects.get_or_create(server=self)

    def clean(self) -> None:
        super().clean()
        # Container and local servers are made (and removed) with what runs them; one
        # added by hand would have nothing behind it and never be listed in the fleet.
        made_by = {
            ServerKind.CONTAINER: (
                Container,
                "Container servers are made by container pools; add a pool instead.",
            ),
            ServerKind.LOCAL: (
                LocalInstance,
                "Local servers are made by local instances; add an instance instead.",
            ),
        }
        if self.kind in made_by:
            owner, refusal = made_by[self.kind]
            if not (self.pk and owner.objects.filter(server_id=self.pk).exists()):
                raise ValidationError({"kind": refusal})

    @property
    def client_id(self) -> str:
        """The server's own client id (stable per deployment): each monitor's for it
        begins with it (`leased_client_id`); a prompt sent while no monitor leases
        the server carries it as it is."""
        return client_id_for(self.pk, FleetSettings.load().deployment_id)


def client_id_for(server_id: int, deployment_id: uuid.UUID) -> str:
    """`Server.client_id` without reading the fleet settings once per server."""
    return f"comfyweb-{deployment_id.hex[:12]}-{server_id}"


class NodeCatalogue(models.Model):
    """A server's `/object_info`, trimmed to what graph validation reads.

    Stored once per distinct content (`digest`): servers with the same nodes and
    models share a row, so checking a graph against the fleet validates it once
    per catalogue, not once per server. Rows never change; the monitor deletes
    the ones no server uses any more. Kept out of ServerState because it is
    ~0.5 MB and the balancer reads ServerState for every task it places.
    """

    digest = models.CharField(max_length=64, unique=True)
    object_info = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"catalogue {self.digest[:12]} ({len(self.object_info)} nodes)"


class ServerState(models.Model):
    """What the monitor last saw of a server; written with update(), never by forms."""

    server = models.OneToOneField(Server, on_delete=models.CASCADE, related_name="state")
    health = models.CharField(max_length=10, choices=Health.choices, default=Health.UNKNOWN)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_healthy_at = models.DateTimeField(null=True, blank=True)
    unhealthy_since = models.DateTimeField(null=True, blank=True)
    next_check_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    response_ms = models.FloatField(null=True, blank=True)
    # Load: the server's own queue (B1) and the prompts we have on it.
    queue_running = models.PositiveIntegerField(default=0)
    queue_pending = models.PositiveIntegerField(default=0)
    queue_source = models.CharField(max_length=20, blank=True)  # "queue" or "system_stats"
    load_checked_at = models.DateTimeField(null=True, blank=True)
    inflight = models.PositiveIntegerField(default=0)
    last_used_at = models.DateTimeField(null=True, blank=True)
    # Affinity (B3 generalised): what the prompt sent to it last keeps loaded (its
    # `Requirements.affinity_key`: models and workflow version), and when.
    last_affinity_key = models.CharField(max_length=64, blank=True)
    last_affinity_at = models.DateTimeField(null=True, blank=True)
    # System stats (S5).
    comfyui_version = models.CharField(max_length=40, blank=True)
    device_name = models.CharField(max_length=200, blank=True)
    vram_total = models.BigIntegerField(null=True, blank=True)
    vram_free = models.BigIntegerField(null=True, blank=True)
    # Capabilities (S8), refreshed on a TTL and when the server restarts.
    node_classes = models.JSONField(default=list, blank=True)
    model_files = models.JSONField(default=dict, blank=True)  # folder -> [file names]
    capabilities_at = models.DateTimeField(null=True, blank=True)
    # Its /object_info (input specs), read with the node classes; None until then.
    catalogue = models.ForeignKey(
        NodeCatalogue, null=True, blank=True, on_delete=models.SET_NULL, related_name="states"
    )
    # Monitor statistics: event counts by type, rate, reconnects, cache hits.
    event_stats = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return f"{self.server}: {self.health}"

    def affinity_key(self, window: timedelta, now=None) -> str | None:
        """What this server has affinity for (models loaded), if it was sent a prompt
        within `window`."""
        return affinity_key(
            self.last_affinity_key, self.last_affinity_at, window, now or timezone.now()
        )


class ServerLease(models.Model):
    """Which monitor watches a server (issue 17): exactly one at a time, for as long as
    it renews the lease (`servers.monitor.leases`). Written with conditional updates
    only, never by forms; a row whose `expires_at` passed is free to take."""

    server = models.OneToOneField(
        Server, on_delete=models.CASCADE, primary_key=True, related_name="lease"
    )
    monitor_id = models.CharField(max_length=200, blank=True)
    expires_at = models.DateTimeField(db_index=True)
    acquired_at = models.DateTimeField(null=True, blank=True)
    # The round of takes that won it: of two monitors taking at once, each learns
    # which of the rows it asked for are its own by this.
    token = models.CharField(max_length=32, blank=True, db_index=True)

    def __str__(self) -> str:
        return f"{self.server_id} by {self.monitor_id or 'nobody'} until {self.expires_at}"

    def held(self, now=None) -> bool:
        return bool(self.monitor_id) and self.expires_at > (now or timezone.now())

    @property
    def client_id(self) -> str:
        """The ComfyUI client id of its holder: the prompts dispatch sends to the
        server carry it, so that their events reach the monitor watching it."""
        return leased_client_id(self.server_id, FleetSettings.load().deployment_id, self.monitor_id)


def leased_client_id(server_id: int, deployment_id: uuid.UUID, monitor_id: str) -> str:
    """`Server.client_id` with the monitor's own tail: every monitor has its own
    client id per server (ComfyUI sends a prompt's events to the one socket of the
    id that submitted it, and a second socket of an id takes the first one's place)."""
    return f"{client_id_for(server_id, deployment_id)}-{monitor_tail(monitor_id)}"


def monitor_tail(monitor_id: str) -> str:
    """Short, and as unique as the monitor ids: a digest (a configured id such as
    "monitor-1" has no random part of its own)."""
    return hashlib.sha256(monitor_id.encode()).hexdigest()[:10]


def is_own_client_id(client_id: str | None, server_id: int, deployment_id: uuid.UUID) -> bool:
    """Whether a prompt in a server's queue was sent by this deployment (with any of
    its monitors' client ids for that server)."""
    base = client_id_for(server_id, deployment_id)
    return client_id == base or (client_id or "").startswith(f"{base}-")


class FailureKind(models.TextChoices):
    HEALTH = "health", "Health check"
    QUEUE = "queue", "Queue check"
    SUBMIT = "submit", "Submit"
    STREAM = "stream", "Event stream"


class FailureRecord(models.Model):
    """One failed check, submit or dropped stream (B5); `recovered_at` when it healed."""

    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="failures")
    at = models.DateTimeField(default=timezone.now, db_index=True)
    kind = models.CharField(max_length=10, choices=FailureKind.choices)
    reason = models.TextField()
    marked_unhealthy = models.BooleanField(default=False)
    recovered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-at"]
        indexes = [models.Index(fields=["server", "-at"])]

    def __str__(self) -> str:
        return f"{self.server} {self.kind} failure at {self.at:%Y-%m-%d %H:%M:%S}"


class FleetSettings(models.Model):
    """The fleet's tunables (B4, B6, B7), one row, edited in the admin."""

    auto_switch = models.BooleanField(
        "automatic failover",
        default=True,
        help_text="Send work to the next best server when one fails. "
        "Off: only the primary server is used.",
    )
    affinity_window = models.PositiveIntegerField(
        "affinity window (s)",
        default=30,
        help_text="A server keeps a workflow it ran this recently.",
    )
    load_cache_age = models.PositiveIntegerField(
        "load info max age (s)", default=15, help_text="Older load data counts as stale."
    )
    health_timeout = models.FloatField("health check timeout (s)", default=10.0)
    queue_timeout = models.FloatField("queue check timeout (s)", default=5.0)
    health_interval = models.FloatField("health check interval (s)", default=5.0)
    failures_before_unhealthy = models.PositiveSmallIntegerField(
        default=2, validators=[MinValueValidator(1)]
    )
    recheck_backoff_base = models.FloatField("re-check backoff base (s)", default=5.0)
    recheck_backoff_cap = models.FloatField("re-check backoff cap (s)", default=120.0)
    capabilities_ttl = models.PositiveIntegerField("node catalogue cache TTL (s)", default=600)
    deployment_id = models.UUIDField(default=uuid.uuid4, editable=False)

    class Meta:
        verbose_name = verbose_name_plural = "fleet settings"

    def __str__(self) -> str:
        return "Fleet settings"

    def save(self, *args, **kwargs) -> None:
        self.pk = 1
        super().save(*args, **kwargs)

    @classmethod
    def load(cls) -> FleetSettings:
        settings, _ = cls.objects.get_or_create(pk=1)
        return settings


class BalancerDecision(models.Model):
    """Why a task went where it went (B9); the fleet page shows the latest."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    chosen = models.ForeignKey(
        Server, null=True, blank=True, on_delete=models.SET_NULL, related_name="decisions"
    )
    workflow_key = models.CharField(max_length=64, blank=True)
    reason = models.CharField(max_length=300)
    # The leaders, best first, and the first servers left out (those not merely full
    # first): a fleet of hundreds is summed up, not copied into every row.
    candidates = models.JSONField(default=list)  # [{"server", "load", ...}]
    excluded = models.JSONField(default=dict)  # server name -> why not
    candidates_total = models.PositiveIntegerField(default=0)
    excluded_total = models.PositiveIntegerField(default=0)
    mode = models.CharField(max_length=20, default="balanced")  # balanced|primary|waiting

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.at:%H:%M:%S} → {self.chosen or 'none'}: {self.reason}"


class ServerSpeed(models.Model):
    """How long a server takes per unit of one kind of work, measured (`servers.speed`)."""

    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="speeds")
    key = models.CharField(max_length=64, help_text="servers.speed.speed_key_of the graph")
    seconds_per_unit = models.FloatField(help_text="running mean, seconds per sampling step")
    last_seconds_per_unit = models.FloatField()
    samples = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["server", "key"], name="server_speed_per_key")
        ]
        ordering = ["server", "-updated_at"]

    def __str__(self) -> str:
        return f"{self.server}: {self.seconds_per_unit:.3f} s/step ({self.key})"
