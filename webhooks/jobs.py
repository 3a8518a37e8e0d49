"""django-q2 jobs of the webhooks app (queued by `webhooks.enqueue`, and the schedule).

- `webhooks.jobs.deliver(delivery_id)` — after an event was recorded, a retry
  falling due, a redeliver.
- `webhooks.jobs.sweep` — every minute: queue again the deliveries whose try is
  due (retries, and hand-offs the broker or a dead worker lost).
"""

from __future__ import annotations

from webhooks import delivery as _delivery


def deliver(delivery_id: int) -> str:
    return _delivery.attempt(delivery_id)


def sweep() -> int:
    return _delivery.sweep()
