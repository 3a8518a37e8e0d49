"""From a task's state change to deliveries: who is told what (issue 18 item 1).

`on_task_transitioned` listens to `tasks.transitions.task_transitioned` (sent after
the change committed). For a task that finished it writes one `Delivery` row per
destination — each of the team's enabled endpoints subscribed to the event, and
the submission's own `webhook` URL — and, when it was the last of its batch to
finish, the same for `batch.completed`; then it queues a delivery job per row.
The row is the hand-off: a job the broker lost is queued again by the sweep
(`webhooks.delivery.sweep`). Nothing here sends HTTP, and nothing here raises
into the transition: a failure is logged (and `send_robust` would catch it anyway).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from tasks import batches
from tasks.models import Output, Status, Task
from webhooks import enqueue
from webhooks.models import Delivery, Endpoint, SubmissionWebhook

logger = logging.getLogger("webhooks")

TASK_EVENTS = {
    Status.COMPLETED: "task.completed",
    Status.FAILED: "task.failed",
    Status.CANCELED: "task.canceled",
}
BATCH_COMPLETED = "batch.completed"
# The failure's class (issue 18 item 4), where the tasks app has it.
OPTIONAL_FIELDS = tuple(
    name for name in ("error_class",) if name in {f.name for f in Task._meta.get_fields()}
)
SUBMISSION = "submission"


def on_task_transitioned(sender, task_id: int, to_status: str, **kwargs: Any) -> None:
    event_type = TASK_EVENTS.get(to_status)
    if event_type is None:
        return
    try:
        created = announce_task(task_id, event_type) if _listened_to(task_id) else []
    except Exception:
        logger.exception("webhooks for task %s (%s) not recorded", task_id, event_type)
        return
    for delivery_id in created:
        enqueue.deliver(delivery_id)


def _listened_to(task_id: int) -> bool:
    """Does anyone hear of this task (an enabled endpoint of its team, or its
    submission's own URL)? One query: most teams have no webhooks, and their
    transitions should pay no more than this."""
    found = (
        Task.objects.filter(pk=task_id)
        .annotate(
            endpoint=Exists(Endpoint.objects.filter(team_id=OuterRef("team_id"), enabled=True)),
            own=Exists(SubmissionWebhook.objects.filter(task_id=OuterRef("pk"))),
        )
        .values_list("endpoint", "own")
        .first()
    )
    return found is not None and any(found)


def announce_task(task_id: int, event_type: str) -> list[int]:
    """Write the deliveries of a task's event (and of its batch's end); their ids."""
    task = (
        Task.objects.select_related("team", "server")
        .filter(pk=task_id)
        .only(
            "pk",
            "status",
            "team__slug",
            "team__name",
            "batch_id",
            "server__name",
            "attempts",
            "error_type",
            "error_message",
            "error_node",
            "created_at",
            "started_at",
            "finished_at",
            *OPTIONAL_FIELDS,
        )
        .first()
    )
    if task is None or TASK_EVENTS.get(task.status) != event_type:
        return []  # it moved on again before we looked: a later event says so
    submission = SubmissionWebhook.objects.filter(task_id=task_id).values_list("url", flat=True)
    payload = _envelope(event_type, task_data(task))
    key = f"{event_type}:{task.pk}:{_stamp(task.finished_at)}"
    created = _record(task.team_id, event_type, key, payload, submission.first())
    if task.batch_id is not None:
        created += _batch_ended(task.team_id, task.batch_id)
    return created


def task_data(task: Task) -> dict[str, Any]:
    outputs = Output.objects.filter(task_id=task.pk).order_by("pk").values_list("pk", flat=True)
    failed = bool(task.error_type or task.error_message)
    return {
        "id": task.pk,
        "status": task.status,
        "team": task.team.slug,
        "batch": task.batch_id,
        "server": task.server.name if task.server else None,
        "attempts": task.attempts,
        "error": {
            "type": task.error_type or "error",
            "message": task.error_message,
            "node_id": task.error_node or None,
            "class": getattr(task, "error_class", "") or None,
        }
        if failed
        else None,
        "outputs": [{"id": pk, "file": f"/api/v1/outputs/{pk}/file"} for pk in outputs],
        "created_at": _iso(task.created_at),
        "started_at": _iso(task.started_at),
        "finished_at": _iso(task.finished_at),
    }


def _batch_ended(team_id: int, batch_id: int) -> list[int]:
    summary = batches.summary(batch_id)
    if not summary.done:
        return []
    last = (
        Task.objects.filter(batch_id=batch_id)
        .order_by("-finished_at")
        .values_list("finished_at", flat=True)
        .first()
    )
    payload = _envelope(BATCH_COMPLETED, {"id": batch_id, **summary.as_json()})
    submission = SubmissionWebhook.objects.filter(batch_id=batch_id).values_list("url", flat=True)
    key = f"{BATCH_COMPLETED}:{batch_id}:{_stamp(last)}"
    return _record(team_id, BATCH_COMPLETED, key, payload, submission.first())


def _record(
    team_id: int, event_type: str, key: str, payload: dict, submission_url: str | None
) -> list[int]:
    endpoints = Endpoint.objects.filter(team_id=team_id, enabled=True).only("pk", "url", "events")
    destinations = [
        (f"endpoint-{e.pk}", e.pk, e.url) for e in endpoints if event_type in (e.events or [])
    ]
    if submission_url:
        destinations.append((SUBMISSION, None, submission_url))
    return list(_insert(team_id, event_type, key, payload, destinations))


def _insert(
    team_id: int,
    event_type: str,
    key: str,
    payload: dict,
    destinations: Iterable[tuple[str, int | None, str]],
) -> Iterable[int]:
    now = timezone.now()
    for destination, endpoint_id, url in destinations:
        # One row per event and destination: the same event announced again (a
        # duplicate signal, two tasks of a batch ending together) adds nothing.
        try:
            with transaction.atomic():
                delivery = Delivery.objects.create(
                    team_id=team_id,
                    endpoint_id=endpoint_id,
                    url=url,
                    event_key=key,
                    destination=destination,
                    event_type=event_type,
                    payload=payload,
                    next_attempt_at=now,
                    created_at=now,
                    window_started_at=now,
                )
        except IntegrityError:
            continue
        yield delivery.pk


def _envelope(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    # Standard Webhooks' recommended payload shape.
    return {"type": event_type, "timestamp": _iso(timezone.now()), "data": data}


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _stamp(moment: datetime | None) -> str:
    return f"{moment.timestamp():.6f}" if moment else "-"
