"""Background jobs of the api app (django-q2, queued by dotted path)."""

from __future__ import annotations

from api import idempotency


def forget_idempotency_keys() -> int:
    """Delete `Idempotency-Key` answers past their 24 hours; runs on a schedule."""
    return idempotency.forget_expired()
