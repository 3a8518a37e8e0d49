"""Tasks, the queue and their outputs (S4, S7, A2, A5, A8): one run of a graph,
waiting in our queue, and the files it produced.

The queue is ours, not ComfyUI's (ARCHITECTURE decision 1): tasks wait here in
priority, age and team-fairness order until dispatch claims one atomically.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from teams.models import Team, TeamScopedQuerySet
from workflows.models import Template, WorkflowVersion


class Priority(models.IntegerChoices):
    LOW = 0, "Low"
    NORMAL = 1, "Normal"
    HIGH = 2, "High"
    URGENT = 3, "Urgent"


class Status(models.TextChoices):
    PENDING = "pending", "Pending"
    DISPATCHED = "dispatched", "Dispatched"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELED = "canceled", "Canceled"

    @classmethod
    def active(cls) -> tuple[Status, ...]:
        """Given to a server and not finished: its prompt runs there (holding one of
        the server's max_inflight slots, `Task.slot_held`) or has ended there and
        its outputs are being fetched."""
        return (cls.DISPATCHED, cls.RUNNING)

    @classmethod
    def finished(cls) -> tuple[Status, ...]:
        return (cls.COMPLETED, cls.FAILED, cls.CANCELED)


class Batch(models.Model):
    """Tasks submitted together (a count, a seed sweep or a list of values)."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="batches")
    submitter = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    description = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "batches"

    def __str__(self) -> str:
        return f"Batch {self.pk}: {self.description}"


class Task(models.Model):
    # Indexed by task_team_newest (and task_team_status), which start with it.
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="tasks", db_index=False)
    submitter = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Null for a raw graph submitted through the API.
    workflow_version = models.ForeignKey(
        WorkflowVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="tasks"
    )
    template = models.ForeignKey(
        Template, null=True, blank=True, on_delete=models.SET_NULL, related_name="tasks"
    )
    params = models.JSONField(default=dict, blank=True)
    graph = models.JSONField(help_text="The rendered API-format graph that is sent.")
    workflow_key = models.CharField(max_length=64, blank=True)
    # What its prompt leaves loaded on a server (servers.requirements.affinity_key_of).
    affinity_key = models.CharField(max_length=64, blank=True)
    # What the graph weighs (servers.speed.Work), set when it is submitted: dispatch
    # and the ETA read these instead of the graph. Blank key: not known (read the graph).
    speed_key = models.CharField(max_length=16, blank=True)
    work_units = models.FloatField(default=0.0)
    priority = models.IntegerField(choices=Priority.choices, default=Priority.NORMAL)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    batch = models.ForeignKey(
        Batch, null=True, blank=True, on_delete=models.SET_NULL, related_name="tasks"
    )
    # Where and as what it runs. A fresh prompt id per attempt: ComfyUI overwrites
    # history entries of a reused id.
    server = models.ForeignKey(
        "servers.Server", null=True, blank=True, on_delete=models.SET_NULL, related_name="tasks"
    )
    prompt_id = models.CharField(max_length=64, blank=True, db_index=True)
    # The ComfyUI client id its prompt was sent with: that of the monitor leasing the
    # server then. A monitor that takes the server over finds the prompts sent with
    # another's (their events go to that one) and reconciles them as they end.
    client_id = models.CharField(max_length=100, blank=True)
    attempts = models.PositiveSmallIntegerField(
        default=0, help_text="Runs started: dispatch adds one each time it sends the task."
    )
    max_attempts = models.PositiveSmallIntegerField(default=3)
    not_before = models.DateTimeField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    # Hand-offs between processes, kept in the database so that a broker blip or
    # a dead worker loses none of them (`tasks.sweep`). While dispatch sends the
    # prompt: its lease, renewed while the sender lives, cleared when the server
    # accepted it. Once the prompt succeeded: when its outputs were asked for.
    sending_until = models.DateTimeField(null=True, blank=True)
    collect_requested_at = models.DateTimeField(null=True, blank=True)
    # One of its server's slots (ServerState.inflight), from the claim until the
    # prompt is off the server: given back when the prompt ends, before its
    # outputs are fetched, so collecting never keeps the server from its next
    # prompt (`tasks.transitions`).
    slot_held = models.BooleanField(default=False)
    # Progress (A6), throttled copies of what the socket shows.
    progress_node = models.CharField(max_length=64, blank=True)
    progress_node_type = models.CharField(max_length=100, blank=True)
    progress_value = models.PositiveIntegerField(default=0)
    progress_max = models.PositiveIntegerField(default=0)
    progress_fraction = models.FloatField(default=0.0)
    # With the graph's size, value and max: the numbers `tasks.progress.Numbers` defines.
    progress_nodes_done = models.PositiveIntegerField(default=0)
    # Why it failed, as the server said.
    error_type = models.CharField(max_length=100, blank=True)
    error_message = models.TextField(blank=True)
    error_node = models.CharField(max_length=64, blank=True)
    # What kind of failure it was, and so whether a retry can help (`tasks.error_classes`).
    error_class = models.CharField(max_length=20, blank=True)
    created_at = models.DateTimeField(default=timezone.now)  # indexed by task_newest
    dispatched_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = TeamScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "-priority", "created_at"], name="task_queue_order"),
            models.Index(fields=["team", "status"], name="task_team_status"),
            models.Index(fields=["server", "status"], name="task_server_status"),
            # The task list (`tasks.listing`), newest first: a page is read in index
            # order, never sorted. One team's tasks (a team filter, a member of
            # one team); anyone's (staff), or several teams' or one status's,
            # filtered on the index's own team and status (no table reads).
            models.Index(fields=["team", "-created_at", "-id"], name="task_team_newest"),
            models.Index(fields=["-created_at", "-id", "team", "status"], name="task_newest"),
        ]

    def __str__(self) -> str:
        return f"Task {self.pk} ({self.status})"

    @staticmethod
    def new_prompt_id() -> str:
        return str(uuid.uuid4())


class TaskEvent(models.Model):
    """The task's timeline: every state change and why."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(default=timezone.now)
    from_status = models.CharField(max_length=12, blank=True)
    to_status = models.CharField(max_length=12, blank=True)
    message = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at", "pk"]

    def __str__(self) -> str:
        return f"{self.task_id}: {self.from_status}→{self.to_status} {self.message}"


class QueuePause(models.Model):
    """A paused queue: one row per paused team, and one with no team for all of them."""

    # "all" or "team-<id>": unique, so pausing twice is one pause on every database
    # (a unique nullable team would let many global rows in on SQLite).
    scope = models.CharField(max_length=32, unique=True, editable=False)
    team = models.OneToOneField(
        Team, null=True, blank=True, on_delete=models.CASCADE, related_name="queue_pause"
    )
    paused_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    paused_at = models.DateTimeField(default=timezone.now)
    reason = models.CharField(max_length=200, blank=True)

    def __str__(self) -> str:
        return f"Queue paused for {self.team or 'everyone'}"

    def save(self, *args, **kwargs) -> None:
        self.scope = self.scope_for(self.team_id)
        super().save(*args, **kwargs)

    @staticmethod
    def scope_for(team_id: int | None) -> str:
        return "all" if team_id is None else f"team-{team_id}"


# Outputs (A8): files a task produced, stored under names we generate.


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
