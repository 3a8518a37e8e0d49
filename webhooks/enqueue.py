"""Queueing the webhooks app's jobs: each path names a function in `webhooks/jobs.py`."""

from __future__ import annotations

from tasks.enqueue import enqueue

DELIVER = "webhooks.jobs.deliver"
SWEEP = "webhooks.jobs.sweep"


def deliver(delivery_id: int) -> bool:
    """Queue one delivery's try; False if the broker is away (the sweep queues it later)."""
    return enqueue(DELIVER, delivery_id, group="webhooks")
