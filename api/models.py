"""API tokens: per user, named, shown once, stored as a SHA-256 digest, expirable, revocable."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class ApiTokenQuerySet(models.QuerySet):
    def usable(self, now=None) -> ApiTokenQuerySet:
        """Not revoked, not expired, and its user still active."""
        now = now or timezone.now()
        return self.filter(revoked_at__isnull=True, user__is_active=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now)
        )


class ApiToken(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, help_text="What uses it, e.g. “render farm CI”.")
    # The first characters of the token, shown so people can tell their tokens apart.
    prefix = models.CharField(max_length=16, editable=False)
    # SHA-256 of the whole token. Tokens carry 256 random bits, so a fast hash
    # is enough: there is nothing to brute-force that a slow hash would protect.
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: never expires.")
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def state(self) -> str:
        """ "active", "revoked" or "expired", for lists."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= timezone.now():
            return "expired"
        return "active"


class IdempotentRequest(models.Model):
    """The answer to a creating POST sent with an `Idempotency-Key` (api/idempotency.py).

    Unique per user and key: of two concurrent requests with one key, the second
    waits on this row and then gets the first one's answer."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    # SHA-256 of the method, the path and the body: the same key with another request is refused.
    request_hash = models.CharField(max_length=64)
    # Set in the transaction that inserted the row, so no other request sees them empty.
    status_code = models.PositiveSmallIntegerField(null=True)
    # The JSON body as text: jsonb would reorder the keys of free-form objects.
    response = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="api_idempotency_key_per_user")
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.status_code})"
