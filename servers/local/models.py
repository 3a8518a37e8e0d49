"""A ComfyUI install on this machine that ComfyWeb launches (issue #14, L1).

Configuration (staff edit it): where the install is, the interpreter, the port,
extra arguments, environment, GPUs, whether it starts with ComfyWeb and whether a
crash restarts it. `wanted` and `restart_requested_at` are what staff asked
(`servers.local.control` writes them); everything else is observation, written by
the launcher (`servers.local.launcher`) only, with `update()`.

    STOPPED ──wanted running──▶ STARTING ──ComfyUI answers──▶ RUNNING
       ▲                            │                           │
       └────── STOPPING ◀──wanted stopped / restart─────────────┘
    exit not asked for: STARTING again after a backoff (auto restart), or CRASHED;
    ERROR: refused before anything was spawned (port taken, no main.py), or a
    process it cannot prove is its own, which it leaves alone.

A running instance is an ordinary `Server` of kind "local" (`server`), enabled
while it runs and disabled when it stops, so the balancer and monitor never
special-case it.

Imported by servers/models.py, so this is a model of the `servers` app.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

# Used in a file name (its log) and a server's name: letters, digits, - and _.
validate_instance_name = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9_-]{0,59}\Z",
    "Letters, digits, - and _ (up to 60), starting with a letter or digit.",
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_BARE_COMMAND = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*\Z")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
# The flags the launcher sets itself: ComfyUI listens on loopback only, on the
# instance's port. argparse takes the last of a repeated flag (and unambiguous
# abbreviations), so an argument naming one of them would override ours.
OWN_FLAGS = ("--listen", "--port")


def validate_absolute_path(value: str) -> None:
    """An absolute, normalised path with no control characters: no `..`, no `//`,
    nothing a log line or an argv could be confused by."""
    if not value:
        return
    if _CONTROL.search(value):
        raise ValidationError("The path has control characters.")
    if not value.startswith("/") or os.path.normpath(value) != value:
        raise ValidationError(
            "Enter an absolute, normalised path (no '..', no trailing slash): /opt/ComfyUI"
        )


def validate_python(value: str) -> None:
    """A command found on PATH (`python3`) or an absolute path to an interpreter."""
    if _BARE_COMMAND.match(value or ""):
        return
    if not (value or "").startswith("/"):
        raise ValidationError("Enter a command (python3) or an absolute path to a Python.")
    validate_absolute_path(value)


def validate_args(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(arg, str) for arg in value):
        raise ValidationError('Arguments are a JSON list of strings: ["--lowvram"]')
    for arg in value:
        if "\x00" in arg:
            raise ValidationError("An argument has a NUL character.")
        flag = arg.split("=", 1)[0]
        if len(flag) > 2 and flag.startswith("--"):
            for own in OWN_FLAGS:
                if own.startswith(flag):
                    raise ValidationError(
                        f"{arg}: the launcher sets {own} itself (loopback, the instance's port)."
                    )


def validate_environment(value: object) -> None:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and _ENV_NAME.match(k) and isinstance(v, str) and "\x00" not in v
        for k, v in value.items()
    ):
        raise ValidationError(
            'The environment is a JSON object of variable names to strings: {"HF_HOME": "/srv/hf"}'
        )
    if "CUDA_VISIBLE_DEVICES" in value:
        raise ValidationError("Choose the GPUs in the GPUs field, not CUDA_VISIBLE_DEVICES.")


def validate_gpus(value: object) -> None:
    if (
        not isinstance(value, list)
        or not all(isinstance(gpu, str) and re.match(r"^[A-Za-z0-9_:-]+\Z", gpu) for gpu in value)
        or len(set(value)) != len(value)
    ):
        raise ValidationError('GPUs are a JSON list of distinct device ids: ["0", "1"]')


def local_dir() -> Path:
    """Where the launcher keeps instances' logs and model-path files."""
    return Path(settings.DATA_DIR) / "local"


# What staff configure (the admin, the pages and the API change only these); the
# rest of a LocalInstance is what staff asked for or what the launcher saw.
CONFIGURATION_FIELDS = [
    "name",
    "comfyui_dir",
    "start_script",
    "python",
    "port",
    "args",
    "environment",
    "gpus",
    "autostart",
    "auto_restart",
]


class Wanted(models.TextChoices):
    RUNNING = "running", "Running"
    STOPPED = "stopped", "Stopped"


class LocalState(models.TextChoices):
    STOPPED = "stopped", "Stopped"
    STARTING = "starting", "Starting"
    RUNNING = "running", "Running"
    STOPPING = "stopping", "Stopping"
    CRASHED = "crashed", "Crashed"
    ERROR = "error", "Error"


# The launcher does nothing with an instance in these until staff ask again.
HALTED_STATES = (LocalState.CRASHED, LocalState.ERROR)
# A process of the instance may be alive in these.
LIVE_STATES = (LocalState.STARTING, LocalState.RUNNING, LocalState.STOPPING)


class LocalInstance(models.Model):
    name = models.CharField(max_length=60, unique=True, validators=[validate_instance_name])
    comfyui_dir = models.CharField(
        "ComfyUI directory",
        max_length=500,
        blank=True,
        validators=[validate_absolute_path],
        help_text="The directory holding ComfyUI's main.py (or give a start script).",
    )
    start_script = models.CharField(
        max_length=500,
        blank=True,
        validators=[validate_absolute_path],
        help_text="An executable that ends by exec-ing ComfyUI; it is given the same flags.",
    )
    python = models.CharField(
        max_length=500,
        default="python3",
        validators=[validate_python],
        help_text="The interpreter that runs main.py: a command on PATH or an absolute path "
        "(the install's venv: /opt/ComfyUI/venv/bin/python).",
    )
    port = models.PositiveIntegerField(
        unique=True,
        validators=[MinValueValidator(1024), MaxValueValidator(65535)],
        help_text="ComfyUI listens on 127.0.0.1 at this port.",
    )
    args = models.JSONField("extra arguments", default=list, blank=True, validators=[validate_args])
    environment = models.JSONField(default=dict, blank=True, validators=[validate_environment])
    gpus = models.JSONField(
        "GPU device ids",
        default=list,
        blank=True,
        validators=[validate_gpus],
        help_text='CUDA_VISIBLE_DEVICES, e.g. ["0"]; empty: whatever the machine gives.',
    )
    autostart = models.BooleanField(default=False, help_text="Started whenever ComfyWeb starts.")
    auto_restart = models.BooleanField(
        default=True, help_text="Restarted with backoff when it exits without being asked."
    )
    # What staff asked (servers.local.control); the launcher moves `state` towards it.
    wanted = models.CharField(max_length=8, choices=Wanted.choices, default=Wanted.STOPPED)
    restart_requested_at = models.DateTimeField(null=True, blank=True)
    # Observation: written by the launcher only.
    state = models.CharField(max_length=8, choices=LocalState.choices, default=LocalState.STOPPED)
    error = models.TextField(blank=True)
    pid = models.PositiveIntegerField(null=True, blank=True)
    # /proc/<pid>/stat starttime (clock ticks after boot): a pid alone may be reused.
    process_started = models.PositiveBigIntegerField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    exited_at = models.DateTimeField(null=True, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    next_start_at = models.DateTimeField(null=True, blank=True)  # a restart's backoff
    restarts = models.PositiveIntegerField(default=0, help_text="Automatic restarts, ever.")
    consecutive_crashes = models.PositiveIntegerField(default=0)
    log_path = models.CharField(max_length=500, blank=True)
    server = models.OneToOneField(
        "servers.Server",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="local_instance",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(comfyui_dir="", start_script__gt="")
                    | models.Q(comfyui_dir__gt="", start_script="")
                ),
                name="localinstance_one_launch_path",
                violation_error_message="Give the ComfyUI directory or a start script, not both.",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        super().clean()
        if bool(self.comfyui_dir) == bool(self.start_script):
            raise ValidationError(
                {"comfyui_dir": "Give the ComfyUI directory (holding main.py) or a start script."}
            )

    @property
    def server_name(self) -> str:
        return f"local-{self.name}"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def default_log_path(self) -> Path:
        return local_dir() / f"{self.name}.log"
