"""Limits on a team's and its users' tasks: how many may run at once, how many may wait.

Blank means no limit. A team's `user_max_*` are the default for each of its
members; a `UserLimit` row overrides them for one member (its own blank fields
fall back to the team's default). "Running" is a task holding a server slot
(dispatched or running); "queued" is a pending one.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from teams.models import Team

NO_LIMIT_HELP = "Blank: no limit."


class TeamLimits(models.Model):
    team = models.OneToOneField(Team, on_delete=models.CASCADE, related_name="limits")
    max_running = models.PositiveIntegerField(
        null=True, blank=True, help_text=f"The team's tasks on servers at once. {NO_LIMIT_HELP}"
    )
    max_queued = models.PositiveIntegerField(
        null=True, blank=True, help_text=f"The team's pending tasks. {NO_LIMIT_HELP}"
    )
    user_max_running = models.PositiveIntegerField(
        null=True, blank=True, help_text=f"Each member's tasks on servers at once. {NO_LIMIT_HELP}"
    )
    user_max_queued = models.PositiveIntegerField(
        null=True, blank=True, help_text=f"Each member's pending tasks. {NO_LIMIT_HELP}"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "team limits"
        verbose_name_plural = "team limits"

    def __str__(self) -> str:
        return f"limits of {self.team}"


class UserLimit(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="user_limits")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="task_limits"
    )
    max_running = models.PositiveIntegerField(
        null=True, blank=True, help_text="Blank: the team's default for its members."
    )
    max_queued = models.PositiveIntegerField(
        null=True, blank=True, help_text="Blank: the team's default for its members."
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "user"], name="one_user_limit_per_team")
        ]

    def __str__(self) -> str:
        return f"limits of {self.user} in {self.team}"
