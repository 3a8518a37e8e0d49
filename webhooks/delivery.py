"""Trying a delivery, retrying it, giving up, and disabling an endpoint that keeps failing.

`attempt(delivery_id)` claims the delivery with one conditional UPDATE (pending and
due -> due again only after `CLAIM_LEASE`), so a job queued twice (the event's and
the sweep's) sends once, and a worker that died mid-try leaves it due again after
the lease. Every try sends the delivery's one `webhook-id`. A failure is retried on
`comfyweb.backoff` until `COMFYWEB_WEBHOOKS_RETRY_HOURS` after the event, then the
delivery fails; each failed try counts against its endpoint, and
`COMFYWEB_WEBHOOKS_DISABLE_AFTER` of them in a row disable it (its pending
deliveries fail with it). A success resets the count.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from comfyweb.backoff import backoff_delay
from webhooks import enqueue, live
from webhooks.models import Delivery, DeliveryAttempt, DeliveryState, Endpoint, SubmissionSecret
from webhooks.sender import Outcome, send

logger = logging.getLogger("webhooks")

# Longer than a try can take (timeout plus resolution), so a live try is never doubled.
CLAIM_LEASE = timedelta(seconds=150)
# The retry schedule: min(RETRY_CAP, RETRY_BASE * 2**n) + jitter seconds.
RETRY_BASE = 5.0
RETRY_CAP = 1800.0
RETRY_JITTER = 2.0
SWEEP_BATCH = 500


def attempt(delivery_id: int, *, manual: bool = False) -> str:
    """Try the delivery if it is due and no one else holds it; what happened."""
    now = timezone.now()
    claimed = Delivery.objects.filter(
        pk=delivery_id, state=DeliveryState.PENDING, next_attempt_at__lte=now
    ).update(next_attempt_at=now + CLAIM_LEASE, attempts=F("attempts") + 1)
    if not claimed:
        return "not due"
    delivery = Delivery.objects.select_related("endpoint").get(pk=delivery_id)
    secret = _secret(delivery)
    if secret is None:
        _fail(delivery, "no signing secret: the endpoint or the team's secret is gone")
        return "failed"
    if delivery.endpoint is not None and not delivery.endpoint.enabled:
        _fail(delivery, f"endpoint disabled: {delivery.endpoint.disabled_reason or 'by hand'}")
        return "failed"
    body = json.dumps(delivery.payload, separators=(",", ":")).encode()
    outcome = send(delivery.url, secret, delivery.message_id, body)
    _log(delivery, outcome, manual=manual)
    result = _succeeded(delivery) if outcome.ok else _failed(delivery, outcome)
    live.refresh(delivery)
    return result


def redeliver(delivery: Delivery) -> Delivery:
    """Try again now, with the same webhook-id, and a fresh retry window."""
    now = timezone.now()
    Delivery.objects.filter(pk=delivery.pk).update(
        state=DeliveryState.PENDING, next_attempt_at=now, window_started_at=now
    )
    enqueue.deliver(delivery.pk)
    delivery.refresh_from_db()
    live.refresh(delivery)
    return delivery


def sweep(now: datetime | None = None) -> int:
    """Queue the due deliveries again (retries, lost hand-offs); how many."""
    now = now or timezone.now()
    due = Delivery.objects.filter(state=DeliveryState.PENDING, next_attempt_at__lte=now)
    queued = 0
    for delivery_id in due.order_by("next_attempt_at").values_list("pk", flat=True)[:SWEEP_BATCH]:
        if not enqueue.deliver(delivery_id):
            break  # the broker is away: the next sweep tries again
        queued += 1
    return queued


def retry_delay(attempts: int) -> float:
    return backoff_delay(max(0, attempts - 1), base=RETRY_BASE, cap=RETRY_CAP, jitter=RETRY_JITTER)


def _secret(delivery: Delivery) -> str | None:
    if delivery.endpoint is not None:
        return delivery.endpoint.secret
    return (
        SubmissionSecret.objects.filter(team_id=delivery.team_id)
        .values_list("secret", flat=True)
        .first()
    )


def _log(delivery: Delivery, outcome: Outcome, *, manual: bool) -> None:
    DeliveryAttempt.objects.create(
        delivery=delivery,
        at=timezone.now(),
        status_code=outcome.status_code,
        latency_ms=outcome.latency_ms,
        response_excerpt=outcome.excerpt,
        error=outcome.error,
        manual=manual,
    )
    Delivery.objects.filter(pk=delivery.pk).update(
        last_status_code=outcome.status_code, last_error=outcome.error
    )


def _succeeded(delivery: Delivery) -> str:
    Delivery.objects.filter(pk=delivery.pk).update(
        state=DeliveryState.SUCCEEDED, delivered_at=timezone.now(), next_attempt_at=None
    )
    if delivery.endpoint_id is not None:
        Endpoint.objects.filter(pk=delivery.endpoint_id).exclude(consecutive_failures=0).update(
            consecutive_failures=0
        )
    return "delivered"


def _failed(delivery: Delivery, outcome: Outcome) -> str:
    now = timezone.now()
    delay = timedelta(seconds=retry_delay(delivery.attempts))
    window = timedelta(hours=settings.COMFYWEB_WEBHOOKS_RETRY_HOURS)
    disabled = _count_failure(delivery)
    if disabled or now + delay > delivery.window_started_at + window:
        _fail(delivery, outcome.error)
        return "failed"
    Delivery.objects.filter(pk=delivery.pk, state=DeliveryState.PENDING).update(
        next_attempt_at=now + delay
    )
    return "retrying"


def _fail(delivery: Delivery, error: str) -> None:
    Delivery.objects.filter(pk=delivery.pk).update(
        state=DeliveryState.FAILED, next_attempt_at=None, last_error=error[:500]
    )


def _count_failure(delivery: Delivery) -> bool:
    """One more failed try for the endpoint; True if that disabled it."""
    if delivery.endpoint_id is None:
        return False
    limit = settings.COMFYWEB_WEBHOOKS_DISABLE_AFTER
    with transaction.atomic():
        Endpoint.objects.filter(pk=delivery.endpoint_id).update(
            consecutive_failures=F("consecutive_failures") + 1
        )
        reason = f"Disabled after {limit} failed deliveries in a row"
        disabled = Endpoint.objects.filter(
            pk=delivery.endpoint_id, enabled=True, consecutive_failures__gte=limit
        ).update(enabled=False, disabled_reason=reason)
        if disabled:
            Delivery.objects.filter(
                endpoint_id=delivery.endpoint_id, state=DeliveryState.PENDING
            ).exclude(pk=delivery.pk).update(
                state=DeliveryState.FAILED, next_attempt_at=None, last_error=reason
            )
    if disabled:
        logger.warning("webhook endpoint %s disabled: %s", delivery.endpoint_id, reason)
    return bool(disabled)
