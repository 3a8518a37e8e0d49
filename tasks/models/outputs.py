"""Outputs (A8): files a task produced, stored under names we generate."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from tasks.models.teams import Team, TeamScopedQuerySet
from tasks.models.work import Task


def output_path(output: Output, filename: str) -> str:
    # Never the server's file name or subfolder: a generated name in a per-team folder.
    extension = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}.get(
        output.content_type, "bin"
    )
    return f"outputs/team-{output.team_id}/{uuid.uuid4().hex}.{extension}"


def thumbnail_path(output: Output, filename: str) -> str:
    return f"thumbnails/team-{output.team_id}/{uuid.uuid4().hex}.webp"


class Output(models.Model):
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="outputs")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="outputs")
    file = models.FileField(upload_to=output_path, max_length=300)
    thumbnail = models.FileField(upload_to=thumbnail_path, max_length=300, blank=True)
    # The server's name for it, for display only (sanitised when shown).
    original_name = models.CharField(max_length=255, blank=True)
    content_type = models.CharField(max_length=100)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    size = models.PositiveBigIntegerField(default=0)
    node_id = models.CharField(max_length=64, blank=True)
    # Workflow version, parameters, seed, server: enough to run it again.
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = TeamScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "pk"]

    def __str__(self) -> str:
        return f"Output {self.pk} of task {self.task_id}"
