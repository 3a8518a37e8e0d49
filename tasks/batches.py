"""Batches as units (issue 16): how far a batch is, in one read for many batches.

A batch's progress counts its tasks: a finished one (completed, failed or
canceled) as a whole, one on a server by its own progress (the fraction the
database keeps, at most a second behind the socket), a pending one as nothing.
So the bar reaches 100 % exactly when every task has ended, whatever the ending;
the counts by state say how it ended. The batch page, the task list's batch
headers and `GET /api/v1/batches/{id}` all read `summaries`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db.models import Count, Sum

from tasks.models import Status, Task


@dataclass(frozen=True)
class BatchSummary:
    batch_id: int
    counts: dict[str, int] = field(default_factory=dict)  # every status, zeros included
    # Finished tasks count 1 each, tasks on a server their progress, pending ones 0.
    done_share: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def finished(self) -> int:
        return sum(self.counts[status] for status in Status.finished())

    @property
    def retryable(self) -> int:
        return self.counts[Status.FAILED] + self.counts[Status.CANCELED]

    @property
    def active(self) -> int:
        return self.total - self.finished

    @property
    def done(self) -> bool:
        return self.total > 0 and self.active == 0

    @property
    def fraction(self) -> float:
        return min(1.0, self.done_share / self.total) if self.total else 0.0

    @property
    def percent(self) -> int:
        # Rounded down: 100 % only once every task has ended.
        return 100 if self.done else min(99, int(self.fraction * 100))

    @property
    def state(self) -> str:
        """One word for the whole batch: pending, running, completed, failed, canceled.

        Running while any task has not ended; then completed if every task did,
        else failed if any failed, else canceled."""
        counts = self.counts
        if self.active:
            active = counts[Status.RUNNING] + counts[Status.DISPATCHED]
            return Status.RUNNING if active or self.finished else Status.PENDING
        if counts[Status.COMPLETED] == self.total:
            return Status.COMPLETED
        return Status.FAILED if counts[Status.FAILED] else Status.CANCELED

    @property
    def parts(self) -> list[tuple[str, str, int]]:
        """(status, label, count) of the states it has tasks in, in lifecycle order."""
        return [(s.value, s.label, self.counts[s]) for s in Status if self.counts[s]]

    def as_json(self) -> dict:
        return {
            "state": self.state,
            "total": self.total,
            "counts": dict(self.counts),
            "finished": self.finished,
            "done": self.done,
            "progress": {"fraction": round(self.fraction, 4), "percent": self.percent},
        }


def summaries(batch_ids: Iterable[int]) -> dict[int, BatchSummary]:
    """Batch id → its summary, from one grouped query (a batch with no tasks: all zeros)."""
    ids = list(dict.fromkeys(batch_ids))
    counts = {pk: dict.fromkeys(Status.values, 0) for pk in ids}
    share = dict.fromkeys(ids, 0.0)
    rows = (
        Task.objects.filter(batch_id__in=ids)
        .order_by()
        .values("batch_id", "status")
        .annotate(n=Count("pk"), progress=Sum("progress_fraction"))
    )
    for row in rows:
        batch, status = row["batch_id"], row["status"]
        counts[batch][status] = row["n"]
        if status in Status.finished():
            share[batch] += row["n"]
        elif status in Status.active():
            share[batch] += row["progress"] or 0.0
    return {pk: BatchSummary(pk, counts[pk], share[pk]) for pk in ids}


def summary(batch_id: int) -> BatchSummary:
    return summaries([batch_id])[batch_id]
