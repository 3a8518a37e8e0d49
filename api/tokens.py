"""Issuing and checking API tokens; the only code that sees a token in clear."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from django.utils import timezone

from api.models import ApiToken

TOKEN_PREFIX = "cw_"  # noqa: S105 - a marker, not a secret
# last_used_at is a hint for people, not an audit log: one write a minute at most.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def digest_of(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def issue_token(user, name: str, *, expires_at: datetime | None = None) -> tuple[ApiToken, str]:
    """A new token for `user`: (the stored row, the token itself, to show once)."""
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        name=name.strip()[:100] or "API token",
        prefix=raw[: len(TOKEN_PREFIX) + 6],
        digest=digest_of(raw),
        expires_at=expires_at,
    )
    return token, raw


def user_for_token(raw: str):
    """The active user a usable token belongs to, or None."""
    if not raw.startswith(TOKEN_PREFIX) or len(raw) > 200:
        return None
    token = ApiToken.objects.usable().select_related("user").filter(digest=digest_of(raw)).first()
    if token is None:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user


def revoke(token: ApiToken) -> None:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
