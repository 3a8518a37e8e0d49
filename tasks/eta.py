"""When tasks will start and finish: a pending task's place in the queue and its
expected start, a running task's remaining time, a batch's expected end (issue 16).

The forecast replays what the fleet will do, with the speeds dispatch places by
(`servers.speed`, learned per server and kind of work from the prompts each ran).
A server runs its prompts one after another (ComfyUI executes one prompt at a
time), so it is free once the prompts on it now are done: a running one after
its predicted time, blended with its own pace so far as its progress grows
(`speed.remaining_seconds`), a waiting one after its whole predicted time. Then
the pending tasks, in dispatch order (`queue.in_dispatch_order`), each go to the
server where they would finish first, as dispatch places them.

Not foreseen: a server lacking a task's models or nodes (the forecast may place
it there), work submitted later at a higher priority, retries. The estimates are
refreshed whenever a page or the API asks, so they correct themselves as prompts
end; `bench/bench_eta.py` measures how far off they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from servers import balancer, fleet, speed
from tasks import queue
from tasks.models import Status, Task
from tasks.work import works_of

# Pending tasks replayed one by one (times the servers they are weighed against);
# the ones behind them are placed at the fleet's pace over those replayed.
REPLAY_BUDGET = 200_000


UNFINISHED = (Status.PENDING, *Status.active())


@dataclass(frozen=True, slots=True)
class Estimate:
    finishes_at: datetime | None  # None: in the queue, but no server can take work
    starts_at: datetime | None = None  # pending and waiting tasks: when it should start
    queue_position: int | None = None  # pending tasks: 1 = dispatched next

    def eta_seconds(self, now: datetime) -> float | None:
        """Seconds from `now` until the task should be done (0 if already due)."""
        if self.finishes_at is None:
            return None
        return max(0.0, (self.finishes_at - now).total_seconds())


def forecast(tasks: Iterable[Task], *, now: datetime | None = None) -> dict[int, Estimate]:
    """Task id -> estimate, for those of `tasks` still to finish whose end can be
    foreseen (none while no server can take work; a pending task held back by a
    paused queue or a retry's backoff has no place in the queue yet)."""
    now = now or timezone.now()
    wanted = {task.pk: task.status for task in tasks}
    if not any(status in UNFINISHED for status in wanted.values()):
        return {}
    plan = fleet.Plan.load(predicting=True)
    replay = _Replay(plan, now)
    estimates = replay.servers_work()
    pending = {pk for pk, status in wanted.items() if status == Status.PENDING}
    if pending:
        estimates.update(replay.queue(pending))
    return {pk: estimates[pk] for pk in wanted if pk in estimates}


def batch_finish(batch_id: int, *, now: datetime | None = None) -> datetime | None:
    """When the batch's last unfinished task should be done (None: all done, or
    not foreseeable)."""
    unfinished = Task.objects.filter(batch_id=batch_id, status__in=UNFINISHED).only("pk", "status")
    estimates = forecast(list(unfinished), now=now)
    ends = [e.finishes_at for e in estimates.values()]
    return None if not ends or None in ends else max(ends)


class _Replay:
    def __init__(self, plan: fleet.Plan, now: datetime) -> None:
        self.plan = plan
        self.now = now
        self.free_at: dict[int, float] = {
            s.id: 0.0  # seconds from now
            for s in plan.servers.values()
            if s.enabled and not s.draining and s.weight > 0 and s.health != balancer.UNHEALTHY
        }

    def at(self, seconds: float) -> datetime:
        return self.now + timedelta(seconds=seconds)

    def servers_work(self) -> dict[int, Estimate]:
        """The prompts on servers now, in the order their servers run them; each
        server's `free_at` moves past them."""
        rows = list(
            Task.objects.filter(status__in=Status.active(), server__isnull=False)
            .order_by("started_at", "dispatched_at", "pk")  # running first, then queued
            .values_list(
                "pk", "server_id", "workflow_key", "started_at", "progress_fraction", "slot_held"
            )
        )
        works = works_of((pk, key) for pk, _sid, key, *_rest in rows)
        estimates: dict[int, Estimate] = {}
        for pk, server_id, _key, started_at, done, slot_held in rows:
            if not slot_held:  # its prompt ended: its outputs are being stored
                estimates[pk] = Estimate(finishes_at=self.now)
                continue
            if pk not in works:
                continue  # deleted meanwhile
            predicted = self.plan.seconds(server_id, works[pk])
            begins = self.free_at.get(server_id, 0.0)
            if started_at is not None:
                ran = (self.now - started_at).total_seconds()
                seconds = speed.remaining_seconds(predicted, ran, done)
                estimates[pk] = Estimate(finishes_at=self.at(begins + seconds))
            else:
                seconds = predicted
                estimates[pk] = Estimate(
                    finishes_at=self.at(begins + seconds), starts_at=self.at(begins)
                )
            if server_id in self.free_at:
                self.free_at[server_id] = begins + seconds
        return estimates

    def queue(self, wanted: set[int]) -> dict[int, Estimate]:
        """Positions of the `wanted` pending tasks and, fleet permitting, their
        start and finish: the queue is read in dispatch order up to the last of
        them, replayed one by one within the budget, then at the fleet's pace."""
        order: list[tuple[int, str]] = []
        positions: dict[int, int] = {}
        rows = queue.in_dispatch_order(now=self.now).values_list("pk", "workflow_key")
        for pk, key in rows.iterator(chunk_size=2000):
            order.append((pk, key))
            if pk in wanted:
                positions[pk] = len(order)
                if len(positions) == len(wanted):
                    break
        if not self.free_at:
            return {pk: _unforeseen(position) for pk, position in positions.items()}
        replayed = min(len(order), max(1, REPLAY_BUDGET // len(self.free_at)))
        works = works_of(order)
        estimates: dict[int, Estimate] = {}
        spent: dict[int, float] = dict.fromkeys(self.free_at, 0.0)  # replayed seconds
        placed: dict[int, int] = dict.fromkeys(self.free_at, 0)
        for index, (pk, _key) in enumerate(order[:replayed], start=1):
            work = works.get(pk)
            if work is None:
                continue
            seconds = {sid: self.plan.seconds(sid, work) for sid in self.free_at}
            server_id = min(self.free_at, key=lambda sid: self.free_at[sid] + seconds[sid])
            begins = self.free_at[server_id]
            self.free_at[server_id] = begins + seconds[server_id]
            spent[server_id] += seconds[server_id]
            placed[server_id] += 1
            if pk in positions:
                estimates[pk] = Estimate(
                    finishes_at=self.at(self.free_at[server_id]),
                    starts_at=self.at(begins),
                    queue_position=index,
                )
        tasks_per_second = _pace(spent, placed)
        for pk, position in positions.items():
            if pk in estimates or pk not in works:
                continue
            if tasks_per_second <= 0:
                estimates[pk] = _unforeseen(position)
                continue
            begins = min(self.free_at.values()) + (position - replayed - 1) / tasks_per_second
            fastest = min(self.plan.seconds(sid, works[pk]) for sid in self.free_at)
            estimates[pk] = Estimate(
                finishes_at=self.at(begins + fastest),
                starts_at=self.at(begins),
                queue_position=position,
            )
        return estimates


def _pace(spent: Mapping[int, float], placed: Mapping[int, int]) -> float:
    """Tasks a second the fleet finished in the replay (each server at its mean)."""
    return sum(placed[sid] / spent[sid] for sid in spent if spent[sid] > 0)


def _unforeseen(position: int) -> Estimate:
    """A place in the queue, but no server to replay on: no time can be given."""
    return Estimate(finishes_at=None, queue_position=position)
