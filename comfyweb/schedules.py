"""Recurring jobs, (re)created after every migrate so deployments need no set-up step."""

from __future__ import annotations

from django_q.models import Schedule

RECURRING = {
    # name: (function, every N minutes)
    "comfyweb.publish_health": ("comfyweb.jobs.publish_health", 1),
    # Safety nets: wake-ups on submit/slot freed/re-admission do the fast path.
    "tasks.dispatch": ("tasks.jobs.dispatch", 1),
    "tasks.reconcile": ("tasks.jobs.reconcile", 1),
    # Container pools: adopt, watch, heal and size them (wake-ups do the fast path).
    "servers.tend_pools": ("servers.jobs.tend_pools", 1),
    # Downloads whose job went missing while the worker kept running.
    "library.resume_downloads": ("library.jobs.resume_downloads", 1),
    # Idempotency-Key answers are kept 24 hours (api/idempotency.py).
    "api.forget_idempotency_keys": ("api.jobs.forget_idempotency_keys", 60),
    # Webhook deliveries due (retries, and hand-offs a broker blip dropped).
    "webhooks.sweep": ("webhooks.jobs.sweep", 1),
}


def ensure_schedules(**kwargs) -> None:
    for name, (func, minutes) in RECURRING.items():
        Schedule.objects.update_or_create(
            name=name,
            defaults={
                "func": func,
                "schedule_type": Schedule.MINUTES,
                "minutes": minutes,
                "repeats": -1,
            },
        )
