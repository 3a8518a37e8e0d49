"""Exponential backoff with jitter: the one retry schedule ComfyWeb uses.

`min(cap, base * 2**n) + jitter` (product item L3). The launcher this replaces
used `base + n**2 + jitter`, which grows quadratically and never caps; every
reconnect loop, job retry and child restart here goes through this module.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field


def backoff_delay(
    attempt: int,
    *,
    base: float = 1.0,
    cap: float = 60.0,
    jitter: float = 0.5,
    rng: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before retry number `attempt` (0 for the first retry).

    The exponential part never exceeds `cap`; up to `jitter` seconds of random
    spread is added on top so that many clients that failed together do not
    retry together.
    """
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    if base < 0 or cap < 0 or jitter < 0:
        raise ValueError("base, cap and jitter must be >= 0")
    # 2**attempt overflows float for huge attempts; past 64 doublings it is capped anyway.
    exponential = cap if attempt > 64 else min(cap, base * 2**attempt)
    return exponential + jitter * rng()


@dataclass
class Backoff:
    """Retry state for one connection or child process.

    Call `failed()` after each failure to get the delay before the next try, and
    `succeeded()` when a try worked; the attempt count only resets once the
    success has lasted `stable_after` seconds, so a peer that accepts and then
    drops every connection still backs off.
    """

    base: float = 1.0
    cap: float = 60.0
    jitter: float = 0.5
    stable_after: float = 30.0
    clock: Callable[[], float] = time.monotonic
    attempt: int = 0
    _up_since: float | None = field(default=None, repr=False)

    def failed(self) -> float:
        if self._up_since is not None and self.clock() - self._up_since >= self.stable_after:
            self.attempt = 0
        self._up_since = None
        delay = backoff_delay(self.attempt, base=self.base, cap=self.cap, jitter=self.jitter)
        self.attempt += 1
        return delay

    def succeeded(self) -> None:
        if self._up_since is None:
            self._up_since = self.clock()

    def reset(self) -> None:
        self.attempt = 0
        self._up_since = None
