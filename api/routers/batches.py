"""Batches as units (issue 16): one batch's state and progress, and what the batch page
does to it — cancel, retry its failed and canceled tasks, run it again.

Retry and run again are `tasks.rerun`, as on the pages; a batch's tasks are
`GET /tasks?batch=<id>`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from django.urls import reverse
from django.utils import timezone
from ninja import Router, Schema
from pydantic import Field

from api import idempotency
from api.errors import ERRORS
from api.idempotency import IdempotencyKey
from api.routers.tasks import RunAgainIn, SubmittedOut, run_again_once, unless_unrunnable
from api.schemas import PathId, Ref, ref
from tasks import access, batches, eta, rerun, task_updates
from tasks.cancel import cancel_batch
from tasks.models import Batch
from tasks.models import Status as TaskStatus
from teams.access import require

router = Router(tags=["batches"])


class BatchCountsOut(Schema):
    pending: int
    dispatched: int
    running: int
    completed: int
    failed: int
    canceled: int


class BatchProgressOut(Schema):
    fraction: float = Field(
        description="Finished tasks count whole, tasks on a server by their own progress, "
        "pending ones not at all, over the batch's size."
    )
    percent: int = Field(description="Rounded down: 100 only once every task has ended.")


class BatchOut(Schema):
    id: int
    team: Ref
    description: str
    submitter: str | None
    created_at: datetime
    state: Literal["pending", "running", "completed", "failed", "canceled"] = Field(
        description="running while any task has not ended; then completed if all did, "
        "else failed if any failed, else canceled."
    )
    total: int
    counts: BatchCountsOut
    finished: int = Field(description="Tasks that ended: completed, failed or canceled.")
    done: bool = Field(description="Every task has ended.")
    progress: BatchProgressOut
    eta_seconds: float | None = Field(
        description="Seconds until its last unfinished task is expected to be done "
        "(`tasks.eta`); null once every task has ended or when no server can take work."
    )
    tasks_url: str = Field(description="Its tasks: the task list filtered by this batch.")


class BatchCanceledOut(Schema):
    batch: int
    outcomes: dict[str, int] = Field(description="canceled / requested / finished / unreachable")


class BatchRetriedOut(Schema):
    retried: list[int] = Field(
        description="The failed or canceled tasks put back in the queue, in place."
    )
    batch: BatchOut


def batch_json(batch: Batch) -> dict[str, Any]:
    now = timezone.now()
    estimate = eta.batch_estimate(batch.pk, now=now)
    return {
        "id": batch.pk,
        "team": ref(batch.team),
        "description": batch.description,
        "submitter": batch.submitter.get_username() if batch.submitter else None,
        "created_at": batch.created_at,
        **batches.summary(batch.pk).as_json(),
        "eta_seconds": estimate.eta_seconds(now) if estimate else None,
        "tasks_url": f"{reverse('api:list_tasks')}?batch={batch.pk}",
    }


@router.get("/batches/{batch_id}", response={200: BatchOut, **ERRORS}, summary="One batch")
def get_batch(request, batch_id: PathId) -> dict[str, Any]:
    return batch_json(access.batch_for(request.user, batch_id))


@router.post(
    "/batches/{batch_id}/cancel",
    response={200: BatchCanceledOut, **ERRORS},
    summary="Cancel a batch",
)
def cancel_whole_batch(request, batch_id: PathId) -> dict[str, Any]:
    batch = access.batch_for(request.user, batch_id)
    require(batch.team.can_submit(request.user), "cancel tasks")
    active = list(
        batch.tasks.exclude(status__in=TaskStatus.finished()).values_list("pk", flat=True)
    )
    outcomes = cancel_batch(batch.pk, by=request.user)
    for pk in active:
        task_updates.publish_task(pk)
    return {"batch": batch.pk, "outcomes": outcomes}


@router.post(
    "/batches/{batch_id}/retry",
    response={200: BatchRetriedOut, **ERRORS},
    summary="Retry a batch's failed and canceled tasks",
)
def retry_batch(request, batch_id: PathId) -> dict[str, Any]:
    """Each failed or canceled task of the batch goes back to pending in place: the
    same task, graph and seeds, its attempts counted afresh. None to retry: `retried`
    is empty."""
    batch = access.batch_for(request.user, batch_id)
    require(batch.team.can_submit(request.user), "retry tasks")
    ids = batch.tasks.filter(status__in=rerun.RETRYABLE).values_list("pk", flat=True)
    retried = unless_unrunnable(lambda: rerun.retry(ids, by=request.user))
    return {"retried": retried, "batch": batch_json(batch)}


@router.post(
    "/batches/{batch_id}/run-again",
    response={201: SubmittedOut, **ERRORS, **idempotency.ERRORS},
    summary="Run a batch again",
)
def run_batch_again(
    request,
    batch_id: PathId,
    payload: RunAgainIn | None = None,
    idempotency_key: IdempotencyKey = None,
):
    """A new batch with the stored graph of every task of this one (seeds included,
    unless `new_seeds`). With an `Idempotency-Key`, sending it again makes nothing more."""
    batch = access.batch_for(request.user, batch_id)
    require(batch.team.can_submit(request.user), "run tasks again")
    ids = list(batch.tasks.order_by("pk").values_list("pk", flat=True))
    return run_again_once(request, ids, payload, idempotency_key)
