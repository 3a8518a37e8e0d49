"""GPU-time accounting (issue 18 item 2): what each attempt cost, and each team's monthly quota.

A `Usage` row is one attempt of one task on one server: how long it held the
server and that times the server's cost weight (`ServerCost`), in GPU-seconds.
It is written once, when the attempt ends (`accounting.recording`); the weight
is copied onto the row so that changing a server's weight later prices new work
only, never rewrites what was billed.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models

from servers.models import Server
from tasks.models import Task
from teams.models import Team, TeamScopedQuerySet

DEFAULT_WEIGHT = 1.0


class ServerCost(models.Model):
    """How much one second on this server counts (an H100 at 3.0 beside a T4 at 1.0).

    A server without a row counts 1.0: the side table keeps the weight in this app
    rather than on `servers.Server`.
    """

    server = models.OneToOneField(Server, on_delete=models.CASCADE, related_name="cost")
    weight = models.FloatField(
        default=DEFAULT_WEIGHT,
        validators=[MinValueValidator(0.0)],
        help_text="GPU-seconds per second held on this server.",
    )

    class Meta:
        verbose_name = "server cost weight"

    def __str__(self) -> str:
        return f"{self.server}: weight {self.weight:g}"

    @classmethod
    def weight_of(cls, server_id: int | None) -> float:
        if server_id is None:
            return DEFAULT_WEIGHT
        found = cls.objects.filter(server_id=server_id).values_list("weight", flat=True).first()
        return DEFAULT_WEIGHT if found is None else found


class Usage(models.Model):
    """One attempt of a task that ran on a server: exactly one row per (task, attempt)."""

    # SET_NULL: the bill outlives the clean-up that deletes old task rows.
    task = models.ForeignKey(Task, on_delete=models.SET_NULL, null=True, related_name="usage")
    task_ref = models.PositiveBigIntegerField(help_text="The task's id, kept after it is deleted.")
    attempt = models.PositiveSmallIntegerField()
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="usage")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="usage"
    )
    username = models.CharField(max_length=150, blank=True)
    server = models.ForeignKey(Server, on_delete=models.SET_NULL, null=True, related_name="usage")
    server_name = models.CharField(max_length=100, blank=True)
    workflow = models.CharField(max_length=200, blank=True, help_text="Template or workflow name.")
    outcome = models.CharField(max_length=12, help_text="The state the attempt ended in.")
    started = models.DateTimeField()
    ended = models.DateTimeField()
    seconds = models.FloatField()
    weight = models.FloatField(default=DEFAULT_WEIGHT)
    gpu_seconds = models.FloatField()
    day = models.DateField(help_text="The UTC day the attempt ended on.")

    objects = TeamScopedQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["task_ref", "attempt"], name="usage_once_per_attempt")
        ]
        indexes = [models.Index(fields=["team", "day"], name="usage_team_day")]
        ordering = ["-ended"]
        verbose_name_plural = "usage"

    def __str__(self) -> str:
        return f"task {self.task_ref} attempt {self.attempt}: {self.gpu_seconds:.1f} GPU-s"


class TeamQuota(models.Model):
    """A team's GPU-seconds per calendar month (UTC); an empty limit is no limit.

    Past `soft_gpu_seconds` the team's new submissions go in at low priority; at
    `hard_gpu_seconds` they are refused. Members are warned from 80 % of either.
    """

    team = models.OneToOneField(Team, on_delete=models.CASCADE, related_name="quota")
    soft_gpu_seconds = models.FloatField(null=True, blank=True, validators=[MinValueValidator(0.0)])
    hard_gpu_seconds = models.FloatField(null=True, blank=True, validators=[MinValueValidator(0.0)])

    def __str__(self) -> str:
        return f"{self.team} quota"
