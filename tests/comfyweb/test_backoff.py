from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from comfyweb.backoff import Backoff, backoff_delay
from tests.clocks import FakeClock


@given(
    attempt=st.integers(min_value=0, max_value=10_000),
    base=st.floats(min_value=0, max_value=100),
    cap=st.floats(min_value=0, max_value=3600),
    jitter=st.floats(min_value=0, max_value=5),
)
def test_delay_is_capped_exponential_plus_bounded_jitter(attempt, base, cap, jitter):
    delay = backoff_delay(attempt, base=base, cap=cap, jitter=jitter)
    exponential = min(cap, base * 2 ** min(attempt, 1100)) if attempt <= 64 else cap
    assert exponential <= delay <= exponential + jitter


def test_delay_doubles_until_the_cap():
    delays = [backoff_delay(n, base=1, cap=10, jitter=0) for n in range(6)]
    assert delays == [1, 2, 4, 8, 10, 10]


def test_negative_attempt_is_rejected():
    with pytest.raises(ValueError, match="attempt"):
        backoff_delay(-1)


def test_backoff_grows_while_failures_follow_short_successes():
    clock = FakeClock(0.0)
    backoff = Backoff(base=1, cap=100, jitter=0, stable_after=30, clock=clock)
    delays = []
    for _ in range(4):
        delays.append(backoff.failed())
        backoff.succeeded()
        clock.now += 5  # up for 5 s only, then dropped again
    assert delays == [1, 2, 4, 8]


def test_backoff_resets_after_a_stable_period():
    clock = FakeClock(0.0)
    backoff = Backoff(base=1, cap=100, jitter=0, stable_after=30, clock=clock)
    backoff.failed()
    backoff.failed()
    backoff.succeeded()
    clock.now += 31
    assert backoff.failed() == 1
