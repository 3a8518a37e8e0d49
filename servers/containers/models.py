"""Docker hosts, container pools and the containers placed on them (issue #13).

`DockerHost` and `ContainerPool` are configuration (admins edit them); a host's
engine id, version, status and error are observation, written by
`servers.containers.engines.check_host` only. `Container` rows are written by the
scheduler: placement creates one (reserving its port and GPU ids), the start-up
watch and health loop move it along STARTING → RUNNING → ERROR / STOPPING.

A container *holds* its port and GPU ids until `stopped_at` is set, the moment it
is removed from its engine. The database refuses two holders of one port on a
host (a partial unique constraint) and two holders of one GPU id on a host (the
`GpuReservation` rows, deleted on release), so a placement bug or a race between
two scale-ups fails loudly instead of starting two containers on one port.

Imported by servers/models.py, so these are models of the `servers` app.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, transaction
from django.db.models import F, Q
from django.utils import timezone

PORT_VALIDATORS = [MinValueValidator(1), MaxValueValidator(65535)]
# Where ComfyUI's models/ directory is in the usual images (ComfyUI cloned to /opt/ComfyUI).
DEFAULT_MODELS_MOUNT = "/opt/ComfyUI/models"


def validate_docker_url(value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme == "unix":
        if not parts.path or parts.netloc:
            raise ValidationError(
                "A socket URL is unix:// and an absolute path: unix:///run/docker.sock"
            )
        return
    if parts.scheme == "tcp":
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None or parts.path not in ("", "/"):
            raise ValidationError("A TCP URL names a host and a port: tcp://10.0.0.5:2375")
        return
    raise ValidationError("Enter a Docker URL: unix:///run/docker.sock or tcp://host:2375")


def validate_device_ids(value: object) -> None:
    if (
        not isinstance(value, list)
        or not all(isinstance(gpu, str) and gpu.strip() for gpu in value)
        or len(set(value)) != len(value)
    ):
        raise ValidationError('GPUs are a JSON list of distinct device ids: ["0", "1"]')


def validate_command(value: object) -> None:
    if value is not None and (
        not isinstance(value, list) or not all(isinstance(arg, str) for arg in value)
    ):
        raise ValidationError(
            'The command is a JSON list of arguments: ["python", "main.py"]; '
            "null runs the image's own."
        )


def validate_environment(value: object) -> None:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and k and isinstance(v, str) for k, v in value.items()
    ):
        raise ValidationError('The environment is a JSON object of strings: {"HF_HOME": "/models"}')


def validate_volumes(value: object) -> None:
    """Docker's short syntax, `source:target[:ro|rw]`, one string a volume."""
    if not isinstance(value, list) or not all(
        isinstance(v, str) and 2 <= len(v.split(":")) <= 3 and all(v.split(":")[:2]) for v in value
    ):
        raise ValidationError(
            'Volumes are a JSON list of "source:target[:ro]": ["/srv/models:/models:ro"]'
        )
    for volume in value:
        parts = volume.split(":")
        if len(parts) == 3 and parts[2] not in ("ro", "rw"):
            raise ValidationError(f"{volume}: the mode is ro or rw")


def validate_mount_path(value: str) -> None:
    """An absolute, normalised POSIX path, not the root: where a bind starts or lands.

    Normalised so that comparing two of them (a pool's volumes against its models
    mount) compares what Docker would; no colon, which Docker's volume syntax
    reads as a separator.
    """
    if (
        not value.startswith("/")
        or value.startswith("//")  # normpath keeps it: POSIX leaves its meaning open
        or value == "/"
        or posixpath.normpath(value) != value
    ):
        raise ValidationError(
            f"{value}: an absolute path without a trailing slash, '.' or '..': /opt/ComfyUI/models"
        )
    if ":" in value or "," in value:
        raise ValidationError(f"{value}: a path without ':' or ','")


def volume_target(volume: object) -> str | None:
    """The normalised target of a volume in Docker's short syntax, None if it has none."""
    if not isinstance(volume, str) or len(parts := volume.split(":")) < 2 or not parts[1]:
        return None
    return posixpath.normpath(parts[1])


def _within(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


class HostStatus(models.TextChoices):
    UNKNOWN = "unknown", "Not checked yet"
    OK = "ok", "OK"
    UNREACHABLE = "unreachable", "Unreachable"


class DockerHost(models.Model):
    name = models.CharField(max_length=100, unique=True)
    docker_url = models.CharField(
        "Docker URL",
        max_length=300,
        validators=[validate_docker_url],
        help_text="unix:///run/docker.sock or tcp://host:2375",
    )
    publish_address = models.GenericIPAddressField(
        default="127.0.0.1",
        help_text="Containers' ports are published on this address; their servers are reached "
        "at it.",
    )
    port_min = models.PositiveIntegerField("first port", default=20000, validators=PORT_VALIDATORS)
    port_max = models.PositiveIntegerField("last port", default=20099, validators=PORT_VALIDATORS)
    gpus = models.JSONField(
        "GPU device ids",
        default=list,
        blank=True,
        validators=[validate_device_ids],
        help_text='The GPUs containers may be given, e.g. ["0", "1"]; empty for none.',
    )
    models_dir = models.CharField(
        "models directory",
        max_length=500,
        blank=True,
        validators=[validate_mount_path],
        help_text="Where the models library is on this engine's machine, mounted read-only "
        "into every container. Empty: ComfyWeb's own library for an engine on this machine "
        "(a unix:// socket); none for a tcp:// engine.",
    )
    enabled = models.BooleanField(default=True)
    # Observation: written by engines.check_host, never by forms.
    engine_id = models.CharField(max_length=200, blank=True)
    engine_version = models.CharField(max_length=50, blank=True)
    status = models.CharField(max_length=12, choices=HostStatus.choices, default=HostStatus.UNKNOWN)
    error = models.TextField(blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(port_min__lte=F("port_max")), name="dockerhost_port_range"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        super().clean()
        if (
            self.port_min is not None
            and self.port_max is not None
            and self.port_min > self.port_max
        ):
            raise ValidationError({"port_max": "The last port is at least the first."})

    @property
    def port_count(self) -> int:
        return self.port_max - self.port_min + 1

    @property
    def is_local(self) -> bool:
        """Its engine runs on ComfyWeb's own machine (reached through a unix socket)."""
        return urlsplit(self.docker_url).scheme == "unix"

    @property
    def library_dir(self) -> str:
        """Where the models library is on this engine's machine; "" when unknown.

        An engine behind a unix socket runs on ComfyWeb's own machine, so its
        library is ours. A tcp engine's machine has its own disks: we cannot know
        where (or whether) the library is there unless staff say.
        """
        if self.models_dir:
            return self.models_dir
        if self.is_local:
            return str(Path(settings.COMFYWEB_MODELS_DIR).resolve())
        return ""

    @property
    def library_missing(self) -> str:
        """Why its containers get no models library ("" when they do)."""
        if self.library_dir:
            return ""
        return (
            "not mounted: a remote engine (tcp) has no models directory set; set it to where "
            "the library is on that machine"
        )


class ContainerPool(models.Model):
    name = models.CharField(max_length=100, unique=True)
    image = models.CharField(max_length=300, help_text="Present on every host: never pulled.")
    command = models.JSONField(null=True, blank=True, default=None, validators=[validate_command])
    environment = models.JSONField(default=dict, blank=True, validators=[validate_environment])
    volumes = models.JSONField(default=list, blank=True, validators=[validate_volumes])
    models_mount = models.CharField(
        max_length=300,
        default=DEFAULT_MODELS_MOUNT,
        blank=True,
        validators=[validate_mount_path],
        help_text="Where ComfyUI's models/ directory is in the image: the models library is "
        "mounted there read-only. Empty: not mounted.",
    )
    container_port = models.PositiveIntegerField(default=8188, validators=PORT_VALIDATORS)
    min_size = models.PositiveSmallIntegerField(default=0)
    max_size = models.PositiveSmallIntegerField(default=1)
    jobs_per_container = models.PositiveSmallIntegerField(
        default=2,
        validators=[MinValueValidator(1)],
        help_text="The max in flight of the servers it makes.",
    )
    gpus_per_container = models.PositiveSmallIntegerField("GPUs per container", default=0)
    idle_seconds = models.PositiveIntegerField(
        default=300, help_text="A container idle this long may be scaled down."
    )
    hosts = models.ManyToManyField(
        DockerHost,
        blank=True,
        related_name="pools",
        help_text="The hosts it may use; none selected: every host.",
    )
    enabled = models.BooleanField(default=True)
    pinned_size = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="Scaled to this size by staff: kept (within the hosts' room) until unpinned; "
        "empty: the queue decides.",
    )
    # Observation, written by the scheduler (servers.containers.tending), never by forms.
    desired_size = models.PositiveSmallIntegerField(default=0)
    decided_at = models.DateTimeField(null=True, blank=True)
    decision = models.TextField(blank=True)  # why desired_size is what it is
    # Crash-loop backoff: containers that failed in a row, and no new one before this.
    failures_in_row = models.PositiveIntegerField(default=0)
    backoff_until = models.DateTimeField(null=True, blank=True)
    # What its servers can run, remembered from the last one that reported it, so a
    # pool scaled to zero still knows. None: never reported (assumed able to run anything).
    node_classes = models.JSONField(null=True, blank=True, default=None)
    model_files = models.JSONField(default=dict, blank=True)  # folder -> [file names]
    catalogue_at = models.DateTimeField(null=True, blank=True)
    # DELETE drains and removes its containers first; the row goes once they are gone.
    delete_requested_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(min_size__lte=F("max_size")), name="containerpool_size_range"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        super().clean()
        if (
            self.min_size is not None
            and self.max_size is not None
            and self.min_size > self.max_size
        ):
            raise ValidationError({"max_size": "The maximum size is at least the minimum."})
        self._check_models_mount()

    def _check_models_mount(self) -> None:
        # Two mounts at one target fail at create ("Duplicate mount point"); one
        # below the library's lands on a read-only bind Docker cannot create it in.
        mount = self.models_mount
        if not mount or not isinstance(self.volumes, list):
            return
        try:
            validate_mount_path(mount)
        except ValidationError:
            return  # said by the field's own validator
        for volume in self.volumes:
            target = volume_target(volume)
            if target is not None and _within(target, mount):
                raise ValidationError(
                    {
                        "volumes": f"{volume}: {mount} is the models mount, where the models "
                        "library is mounted read-only; choose another target, or empty the "
                        "models mount to mount your own models there."
                    }
                )

    def library_bind(self, host: DockerHost) -> tuple[str, str] | None:
        """(directory on the host's machine, target in the container) of the library, or
        None when this pool's containers on `host` get none (`library_missing` says why)."""
        source = host.library_dir
        return (source, self.models_mount) if self.models_mount and source else None

    def library_missing(self, host: DockerHost) -> str:
        if not self.models_mount:
            return "not mounted: the pool has no models mount"
        return host.library_missing

    def usable_hosts(self) -> models.QuerySet[DockerHost]:
        """The hosts this pool may place containers on, enabled or not."""
        chosen = self.hosts.all() if self.pk else DockerHost.objects.none()
        return chosen if chosen.exists() else DockerHost.objects.all()


class ContainerState(models.TextChoices):
    STARTING = "starting", "Starting"
    RUNNING = "running", "Running"
    ERROR = "error", "Error"
    STOPPING = "stopping", "Stopping"


class ContainerQuerySet(models.QuerySet):
    def holding(self) -> ContainerQuerySet:
        """Containers that still hold their port and GPU ids (not removed from their engine)."""
        return self.filter(stopped_at__isnull=True)


class Container(models.Model):
    pool = models.ForeignKey(ContainerPool, on_delete=models.CASCADE, related_name="containers")
    host = models.ForeignKey(DockerHost, on_delete=models.PROTECT, related_name="containers")
    docker_id = models.CharField(max_length=64, blank=True)  # empty until created on the engine
    port = models.PositiveIntegerField(validators=PORT_VALIDATORS)
    gpus = models.JSONField(default=list, blank=True)  # device ids, as GpuReservation holds them
    server = models.OneToOneField(
        "servers.Server",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="container",
    )
    state = models.CharField(
        max_length=10, choices=ContainerState.choices, default=ContainerState.STARTING
    )
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(
        null=True, blank=True, help_text="Removed from its engine: its port and GPUs are free."
    )
    error = models.TextField(blank=True)
    # STOPPING: why (scaled down, replaced, drained by staff, pool deleted) and since when.
    stop_reason = models.CharField(max_length=200, blank=True)
    stop_requested_at = models.DateTimeField(null=True, blank=True)
    # RUNNING with nothing in flight since then (the scheduler's look); None while busy.
    idle_since = models.DateTimeField(null=True, blank=True)

    objects = ContainerQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["host", "port"],
                condition=Q(stopped_at__isnull=True),
                name="container_port_held_once",
                violation_error_message="Another container on this host holds that port.",
            ),
            models.UniqueConstraint(
                fields=["host", "docker_id"],
                condition=~Q(docker_id=""),
                name="container_docker_id_unique",
            ),
        ]
        indexes = [models.Index(fields=["host", "stopped_at"])]

    def __str__(self) -> str:
        return f"{self.pool} on {self.host}:{self.port}"

    def release(self) -> None:
        """It is gone from its engine: free its port and GPU ids for the next container."""
        with transaction.atomic():
            self.stopped_at = self.stopped_at or timezone.now()
            self.save(update_fields=["stopped_at"])
            self.gpu_reservations.all().delete()


class ScalingDecision(models.Model):
    """One change the autoscaler decided for a pool, and why (shown on the pool's page)."""

    pool = models.ForeignKey(ContainerPool, on_delete=models.CASCADE, related_name="decisions")
    at = models.DateTimeField(default=timezone.now)
    desired = models.PositiveSmallIntegerField()
    live = models.PositiveSmallIntegerField()  # starting + running, not stopping
    work = models.PositiveIntegerField()  # pending work it can run + in flight on it
    action = models.CharField(max_length=100)  # "start 3", "drain 1", "hold"
    reason = models.TextField()

    class Meta:
        ordering = ["-at", "-pk"]
        indexes = [models.Index(fields=["pool", "-at"])]

    def __str__(self) -> str:
        return f"{self.pool}: {self.action} ({self.reason})"


class GpuReservation(models.Model):
    """One GPU id of a host held by one container: unique per host, so never shared."""

    host = models.ForeignKey(DockerHost, on_delete=models.CASCADE, related_name="gpu_reservations")
    device_id = models.CharField(max_length=100)
    container = models.ForeignKey(
        Container, on_delete=models.CASCADE, related_name="gpu_reservations"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["host", "device_id"], name="gpu_held_once"),
        ]

    def __str__(self) -> str:
        return f"GPU {self.device_id} of {self.host_id} for container {self.container_id}"
