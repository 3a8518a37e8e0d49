"""The models library (issue #14): files under COMFYWEB_MODELS_DIR and the downloads
that put them there.

On disk the library is `<COMFYWEB_MODELS_DIR>/<folder>/<filename>`, ComfyUI's own
layout, so local installs and containers read it as an extra model path. A
`ModelFile` row stands for one such file; a `Download` is a request to fetch
one, worked on by the worker (`library/jobs.py`), resumable through its
`DownloadRange` rows.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, URLValidator
from django.db import models
from django.db.models import Q

from library.folders import FOLDERS
from library.validation import (
    validate_filename,
    validate_folder,
    validate_headers,
    validate_sha256,
)

FOLDER_CHOICES = [(name, name) for name in FOLDERS]
DEFAULT_CONNECTIONS = 4
MAX_CONNECTIONS = 16


def library_root() -> Path:
    return Path(settings.COMFYWEB_MODELS_DIR)


def library_path(folder: str, filename: str) -> Path:
    """Where a library file lives. Call only with validated names."""
    return library_root() / folder / filename


class ModelFile(models.Model):
    folder = models.CharField(max_length=32, choices=FOLDER_CHOICES, validators=[validate_folder])
    filename = models.CharField(max_length=255, validators=[validate_filename])
    size = models.BigIntegerField()
    # Empty until computed (scan() computes it for what it finds).
    sha256 = models.CharField(max_length=64, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["folder", "filename"]
        constraints = [
            models.UniqueConstraint(fields=["folder", "filename"], name="library_file_unique_name")
        ]

    def __str__(self) -> str:
        return f"{self.folder}/{self.filename}"

    @property
    def path(self) -> Path:
        return library_path(self.folder, self.filename)


class DownloadState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    VERIFYING = "verifying", "Verifying"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELED = "canceled", "Canceled"


ACTIVE_STATES = (DownloadState.QUEUED, DownloadState.RUNNING, DownloadState.VERIFYING)
ENDED_STATES = (DownloadState.COMPLETED, DownloadState.FAILED, DownloadState.CANCELED)


class Download(models.Model):
    """One request to fetch a URL into the library.

    `headers` are write-only: they are sent to the URL's own host and nowhere
    else, and never shown — not in `__str__`, logs, serializers or the admin.
    """

    url = models.URLField(max_length=2048, validators=[URLValidator(schemes=["http", "https"])])
    folder = models.CharField(max_length=32, choices=FOLDER_CHOICES, validators=[validate_folder])
    filename = models.CharField(max_length=255, validators=[validate_filename])
    headers = models.JSONField(default=dict, blank=True, validators=[validate_headers])
    expected_sha256 = models.CharField(max_length=64, blank=True, validators=[validate_sha256])
    # What the finished file hashed to, whether or not one was expected.
    sha256 = models.CharField(max_length=64, blank=True)
    size = models.BigIntegerField(null=True, blank=True)  # None until probed (or unknown)
    downloaded = models.BigIntegerField(default=0)
    connections = models.PositiveSmallIntegerField(
        default=DEFAULT_CONNECTIONS,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_CONNECTIONS)],
    )
    # How many connections are fetching right now (progress); `connections` is the request.
    active_connections = models.PositiveSmallIntegerField(default=0)
    state = models.CharField(
        max_length=10, choices=DownloadState.choices, default=DownloadState.QUEUED
    )
    error = models.TextField(blank=True)
    # What the server said about the file when probed: a change restarts the download.
    etag = models.CharField(max_length=512, blank=True)
    last_modified = models.CharField(max_length=64, blank=True)
    accepts_ranges = models.BooleanField(null=True, blank=True)
    speed_bps = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    # The worker process working on it ("host:pid:nonce") and when it last said so:
    # a job re-delivered after a worker died takes over a download whose runner is gone.
    runner = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # Two downloads writing one file would corrupt each other's .part.
            models.UniqueConstraint(
                fields=["folder", "filename"],
                condition=Q(state__in=["queued", "running", "verifying"]),
                name="library_one_active_download_per_file",
            )
        ]

    def __str__(self) -> str:
        return f"{self.folder}/{self.filename} ({self.state})"

    @property
    def final_path(self) -> Path:
        return library_path(self.folder, self.filename)

    @property
    def part_path(self) -> Path:
        return self.final_path.with_name(self.filename + ".part")

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES


class DownloadRange(models.Model):
    """Bytes `start`..`end` (inclusive) of a download; `done` of them are in the .part.

    `done` is written only after the bytes it counts were flushed to disk, so a
    restarted job fetches at most what arrived since the last progress write.
    """

    download = models.ForeignKey(Download, on_delete=models.CASCADE, related_name="ranges")
    start = models.BigIntegerField()
    end = models.BigIntegerField()
    done = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["start"]
        constraints = [
            models.UniqueConstraint(fields=["download", "start"], name="library_range_unique")
        ]

    def __str__(self) -> str:
        return f"bytes {self.start}-{self.end} ({self.done} done)"

    @property
    def length(self) -> int:
        return self.end - self.start + 1
