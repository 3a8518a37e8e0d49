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

from django.db.models import F
from django.utils import timezone

from servers import balancer, speed
from servers.models import Server
from tasks import queue
from tasks.models import Status, Task
from tasks.work import works_of

# Pending tasks replayed one by one, times the servers each is weighed against
# (500 tasks on 12 servers: a few ms); those behind are placed at the fleet's
# pace over the replayed ones.
REPLAY_BUDGET = 6_000
QUEUE_CHUNK = 5_000  # pending tasks read at a time, in dispatch order


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
    replay = _Replay.load(now)
    estimates = replay.servers_work()
    pending = {pk for pk, status in wanted.items() if status == Status.PENDING}
    if pending:
        estimates.update(replay.queue(pending))
    return {pk: estimates[pk] for pk in wanted if pk in estimates}


def batch_estimate(batch_id: int, *, now: datetime | None = None) -> Estimate | None:
    """When the batch's last unfinished task should be done (None: every task has
    ended; `finishes_at` None: not foreseeable now)."""
    unfinished = Task.objects.filter(batch_id=batch_id, status__in=UNFINISHED).only("pk", "status")
    estimates = forecast(list(unfinished), now=now)
    if not estimates:
        return None
    ends = [e.finishes_at for e in estimates.values()]
    return Estimate(finishes_at=None if None in ends else max(ends))


def all_done(*, now: datetime | None = None) -> datetime | None:
    """When all the work there is now should be done: every prompt on a server and
    the whole queue (None: nothing to do, or no server can take work)."""
    now = now or timezone.now()
    replay = _Replay.load(now)
    ends = [e.finishes_at for e in replay.servers_work().values()]
    last = queue.in_dispatch_order(now=now).reverse().values_list("pk", flat=True).first()
    if last is not None:
        ends += [e.finishes_at for e in replay.queue({last}).values()]
        # A long task replayed early may end after the last one.
        ends.append(replay.at(max(replay.free_at.values(), default=0.0)))
    if not ends or None in ends:
        return None
    return max(ends)


class _Replay:
    def __init__(self, speeds: speed.SpeedTable, taking_work: Iterable[int], now: datetime):
        self.speeds = speeds
        self.now = now
        self.free_at: dict[int, float] = dict.fromkeys(taking_work, 0.0)  # seconds from now
        self._rates: dict[tuple[int, str], float] = {}  # a replay asks each many times

    @classmethod
    def load(cls, now: datetime) -> _Replay:
        """The servers that take work now and every server's speeds (two queries;
        none of the catalogues dispatch reads: the forecast does not check them)."""
        servers = list(
            Server.objects.values_list("pk", "weight", "enabled", "draining", "state__health")
        )
        taking_work = [
            pk
            for pk, weight, enabled, draining, health in servers
            if enabled and not draining and weight > 0 and health != balancer.UNHEALTHY
        ]
        weights = {pk: weight for pk, weight, *_ in servers}
        return cls(speed.SpeedTable.load(weights), taking_work, now)

    def seconds(self, server_id: int, work: speed.Work) -> float:
        rate = self._rates.get((server_id, work.key))
        if rate is None:
            rate = self._rates[server_id, work.key] = self.speeds.rate(server_id, work.key)
        return rate * work.units

    def at(self, seconds: float) -> datetime:
        return self.now + timedelta(seconds=seconds)

    def servers_work(self) -> dict[int, Estimate]:
        """The prompts on servers now, in the order their servers run them; each
        server's `free_at` moves past them."""
        rows = list(
            Task.objects.filter(status__in=Status.active(), server__isnull=False)
            # Running first, then queued: NULLs last said outright, as SQLite puts
            # them first (a queued prompt was forecast to end before the running one).
            .order_by(F("started_at").asc(nulls_last=True), "dispatched_at", "pk")
            .values_list(
                "pk",
                "server_id",
                "speed_key",
                "work_units",
                "started_at",
                "progress_fraction",
                "slot_held",
            )
        )
        works = works_of((pk, key, units) for pk, _sid, key, units, *_rest in rows)
        estimates: dict[int, Estimate] = {}
        for pk, server_id, _key, _units, started_at, done, slot_held in rows:
            if not slot_held:  # its prompt ended: its outputs are being stored
                estimates[pk] = Estimate(finishes_at=self.now)
                continue
            if pk not in works:
                continue  # deleted meanwhile
            predicted = self.seconds(server_id, works[pk])
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
        order: list[tuple[int, str, float]] = []
        positions: dict[int, int] = {}
        rows = queue.in_dispatch_order(now=self.now).values_list("pk", "speed_key", "work_units")
        # In slices, not a server-side cursor: PostgreSQL holds a cursor's whole result
        # outside a transaction, where a slice stops at the last task asked for.
        while len(positions) < len(wanted):
            chunk = list(rows[len(order) : len(order) + QUEUE_CHUNK])
            for pk, key, units in chunk:
                order.append((pk, key, units))
                if pk in wanted:
                    positions[pk] = len(order)
            if len(chunk) < QUEUE_CHUNK:
                break
        if not self.free_at:
            return {pk: _unforeseen(position) for pk, position in positions.items()}
        replayed = min(len(order), max(1, REPLAY_BUDGET // len(self.free_at)))
        works = works_of(order)
        estimates: dict[int, Estimate] = {}
        spent: dict[int, float] = dict.fromkeys(self.free_at, 0.0)  # replayed seconds
        placed: dict[int, int] = dict.fromkeys(self.free_at, 0)
        for index, (pk, _key, _units) in enumerate(order[:replayed], start=1):
            work = works.get(pk)
            if work is None:
                continue
            # Where it would finish first (the earliest, ties to the first server).
            finish, server_id, took = min(
                (free + (took := self.seconds(sid, work)), sid, took)
                for sid, free in self.free_at.items()
            )
            begins = self.free_at[server_id]
            self.free_at[server_id] = finish
            spent[server_id] += took
            placed[server_id] += 1
            if pk in positions:
                estimates[pk] = Estimate(
                    finishes_at=self.at(finish),
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
            fastest = min(self.seconds(sid, works[pk]) for sid in self.free_at)
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
