"""Signed webhooks (issue 18 item 1): where a team's events go, and every try to send them.

- `Endpoint`: a team's URL subscribed to some event types, with its signing secret
  (Standard Webhooks: `whsec_` + base64), shown once when created.
- `SubmissionSecret`: the team's secret for per-submission webhooks (`"webhook": url`
  on `POST /api/v1/tasks`), shown once when created or rotated.
- `SubmissionWebhook`: that URL, kept per task of the submission.
- `Delivery`: one event for one destination, with the one `webhook-id` every try
  sends; `next_attempt_at` is the hand-off the sweep re-queues (a broker blip or a
  dead worker loses nothing).
- `DeliveryAttempt`: one HTTP try: status, latency, the response's first bytes, error.
"""

from __future__ import annotations

import uuid

from django.db import models

from teams.models import Team, TeamScopedQuerySet

EVENT_TYPES = ("task.completed", "task.failed", "task.canceled", "batch.completed")
EVENT_CHOICES = [(name, name) for name in EVENT_TYPES]


def new_message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


class Endpoint(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=2048)
    events = models.JSONField(default=list, help_text="Event types it receives")
    description = models.CharField(max_length=200, blank=True)
    secret = models.CharField(max_length=100, editable=False)
    enabled = models.BooleanField(default=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    disabled_reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TeamScopedQuerySet.as_manager()

    class Meta:
        ordering = ["team__name", "pk"]

    def __str__(self) -> str:
        return f"{self.url} ({self.team})"


class SubmissionSecret(models.Model):
    team = models.OneToOneField(Team, on_delete=models.CASCADE, related_name="webhook_secret")
    secret = models.CharField(max_length=100, editable=False)
    created_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Submission webhook secret of {self.team}"


class SubmissionWebhook(models.Model):
    """The `webhook` URL a submission named, for each of its tasks (the task's own id,
    not a foreign key: clean-up may delete tasks while their deliveries are kept)."""

    task_id = models.BigIntegerField(primary_key=True)
    batch_id = models.BigIntegerField(null=True, db_index=True)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    url = models.URLField(max_length=2048)

    def __str__(self) -> str:
        return f"task {self.task_id} -> {self.url}"


class DeliveryState(models.TextChoices):
    PENDING = "pending", "Pending"
    SUCCEEDED = "succeeded", "Delivered"
    FAILED = "failed", "Failed"


class Delivery(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="webhook_deliveries")
    # Null for a per-submission webhook (then `url` is the submission's).
    endpoint = models.ForeignKey(
        Endpoint, on_delete=models.CASCADE, null=True, blank=True, related_name="deliveries"
    )
    url = models.URLField(max_length=2048)
    # What happened, once: "task.completed:<task>:<finished at>"; with the destination it
    # is unique, so an event announced twice makes one delivery and one webhook-id.
    event_key = models.CharField(max_length=120)
    destination = models.CharField(max_length=40, help_text="endpoint-<id> or submission")
    event_type = models.CharField(max_length=20, choices=EVENT_CHOICES)
    message_id = models.CharField(max_length=40, unique=True, default=new_message_id)
    payload = models.JSONField()
    state = models.CharField(
        max_length=10, choices=DeliveryState.choices, default=DeliveryState.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    # Due time of the next try (pending only); a worker that claims it pushes it ahead by
    # a lease, so a dead worker's try falls due again.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()
    # Retries stop after the retry window counted from here (a redeliver restarts it).
    window_started_at = models.DateTimeField()
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)

    objects = TeamScopedQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "deliveries"
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["event_key", "destination"], name="one_delivery_per_event_and_destination"
            )
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="webhook_delivery_due",
                condition=models.Q(state="pending"),
            )
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.message_id} -> {self.url}"


class DeliveryAttempt(models.Model):
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    at = models.DateTimeField()
    status_code = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    response_excerpt = models.CharField(max_length=500, blank=True)
    error = models.CharField(max_length=500, blank=True)
    manual = models.BooleanField(default=False, help_text="Asked for by a redeliver")

    class Meta:
        ordering = ["-at", "-pk"]

    def __str__(self) -> str:
        return (
            f"{self.delivery_id} at {self.at:%Y-%m-%d %H:%M:%S}: {self.status_code or self.error}"
        )

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300
