"""Connection statistics of an EventStream (S6: counts by type, rate, uptime, reconnects)."""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime


class RateMeter:
    """Events per second over a sliding window, in one-second buckets.

    Cheap on the hot path (one integer add per event) and bounded in memory
    whatever the event rate.
    """

    def __init__(self, window: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self._window = max(1, int(window))
        self._clock = clock
        self._started = clock()
        self._buckets: deque[list[int]] = deque()  # [second, count], oldest first

    def record(self, count: int = 1) -> None:
        second = int(self._clock())
        if self._buckets and self._buckets[-1][0] == second:
            self._buckets[-1][1] += count
        else:
            self._buckets.append([second, count])
            self._trim(second)

    def rate(self) -> float:
        now = self._clock()
        self._trim(int(now))
        # Early on, divide by the time actually observed, not the whole window.
        span = min(float(self._window), max(1.0, now - self._started))
        return sum(count for _, count in self._buckets) / span

    def _trim(self, second: int) -> None:
        while self._buckets and self._buckets[0][0] <= second - self._window:
            self._buckets.popleft()


@dataclass(frozen=True)
class StreamStats:
    """A snapshot; cheap to take, safe to hand to another task or template."""

    url: str
    client_id: str
    connected: bool
    connected_since: datetime | None
    uptime: float  # seconds the current connection has been up (0 when down)
    reconnects: int  # successful connections after a lost one
    failed_attempts: int  # connection attempts that failed, all time
    last_error: str | None
    retry_in: float | None  # the last backoff delay chosen, while disconnected
    events_total: int
    events_by_type: Mapping[str, int]
    events_per_second: float
    unknown_events: int
    parse_errors: int
    dropped_events: int
    server_features: Mapping[str, object] | None = field(default=None)


class StatsRecorder:
    """The mutable counters behind `StreamStats`, updated by the stream only."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, rate_window: float = 10.0):
        self._clock = clock
        self.rate = RateMeter(rate_window, clock)
        self.by_type: Counter[str] = Counter()
        self.total = 0
        self.unknown = 0
        self.parse_errors = 0
        self.reconnects = 0
        self.failed_attempts = 0
        self.last_error: str | None = None
        self.retry_in: float | None = None
        self.connected_since: datetime | None = None
        self._up_since: float | None = None
        self.down_since: float | None = None

    def event(self, event_type: str, *, unknown: bool = False) -> None:
        self.total += 1
        self.by_type[event_type] += 1
        self.unknown += unknown
        self.rate.record()

    def connected(self) -> float | None:
        """Mark the connection up; returns the downtime that just ended, if any."""
        downtime = None if self.down_since is None else self._clock() - self.down_since
        if self.down_since is not None:
            self.reconnects += 1
        self._up_since = self._clock()
        self.connected_since = datetime.now(UTC)
        self.down_since = None
        self.retry_in = None
        return downtime

    def disconnected(self, reason: str, retry_in: float) -> bool:
        """Mark the connection down; True if it was up (a loss, not a failed retry)."""
        was_up = self._up_since is not None
        if was_up:
            self.down_since = self._clock()
        else:
            self.failed_attempts += 1
        self._up_since = None
        self.connected_since = None
        self.last_error = reason
        self.retry_in = retry_in
        return was_up

    @property
    def uptime(self) -> float:
        return 0.0 if self._up_since is None else self._clock() - self._up_since
