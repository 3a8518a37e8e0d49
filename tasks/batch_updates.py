"""Live updates of the batch page (on `comfyweb.live`), topic "batch", key = batch id.

The page's live parts (its summary with the progress bar, its actions, its
contact sheet) depend on the user (the actions on their role), so a task of the
batch changing state broadcasts a refresh hint and each browser fetches its own
parts, at most once a second (as the dashboard's queue panel does). The rows of
its tasks are the task list's row cells, pushed per progress step on the
"team-tasks" topic the page also subscribes to.
"""

from __future__ import annotations

from django.template.loader import render_to_string
from django.urls import reverse

from comfyweb import live, topics
from tasks import batches, eta
from tasks.models import Batch, Output
from teams.models import Team

TOPIC = "batch"
PAGE = "tasks/batch.html"
PARTS = ("summary", "actions", "contact-sheet")
# The contact sheet shows at most this many outputs; the gallery has every one.
SHEET_LIMIT = 200


def target(batch_id: int, part: str) -> str:
    return f"batch-{batch_id}-{part}"


def context(user, batch: Batch) -> dict:
    """What the batch page's live parts show to `user`."""
    summary = batches.summary(batch.pk)
    sheet = Output.objects.filter(task__batch_id=batch.pk).order_by("task_id", "pk")
    outputs = list(sheet[: SHEET_LIMIT + 1])
    return {
        "batch": batch,
        "summary": summary,
        "outputs": outputs[:SHEET_LIMIT],
        "more_outputs": len(outputs) > SHEET_LIMIT,
        "can_submit": batch.team.can_submit(user),
        "batch_estimate": eta.batch_estimate(batch.pk),
    }


def render_parts(user, batch: Batch, request=None) -> list[tuple[str, str]]:
    """(target, html) of the live parts, for `user`. The actions are forms, which need
    the request's CSRF token: only with a request (the page's refetch), not in the
    socket's snapshot."""
    values = context(user, batch)
    parts = PARTS if request is not None else tuple(p for p in PARTS if p != "actions")
    return [
        (target(batch.pk, part), render_to_string(f"{PAGE}#{part}", values, request=request))
        for part in parts
    ]


def on_task_transitioned(sender, task_id: int, batch_id: int | None, **kwargs) -> None:
    """`task_transitioned` receiver: a task of a batch changed state, its page refetches."""
    if batch_id is not None:
        refresh_browsers(batch_id)


def refresh_browsers(batch_id: int) -> None:
    url = reverse("tasks:batch_detail", args=[batch_id]) + "?parts=live"
    live.publish_refresh(TOPIC, target(batch_id, "summary"), url, key=str(batch_id))


def _allowed(user, key: str | None) -> bool:
    return (
        key is not None
        and key.isdigit()
        and Batch.objects.filter(pk=key, team__in=Team.objects.for_user(user)).exists()
    )


def _snapshot(user, key: str | None) -> list[tuple[str, str]]:
    batch = Batch.objects.select_related("team").filter(pk=key).first() if key else None
    return render_parts(user, batch) if batch is not None else []


topic = topics.Topic(name=TOPIC, allowed=_allowed, snapshot=_snapshot)
