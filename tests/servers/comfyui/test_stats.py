"""Connection statistics: event rate and the up/down bookkeeping."""

from __future__ import annotations

import pytest

from servers.comfyui.stats import RateMeter, StatsRecorder
from tests.clocks import FakeClock


def test_rate_counts_events_in_the_sliding_window():
    clock = FakeClock()
    meter = RateMeter(window=10, clock=clock)
    clock.advance(20)
    for _ in range(10):
        clock.advance(1)
        meter.record()
    assert meter.rate() == pytest.approx(1.0)
    clock.advance(5)
    assert meter.rate() == pytest.approx(0.5)
    clock.advance(10)
    assert meter.rate() == 0


def test_rate_early_on_divides_by_the_time_observed():
    clock = FakeClock()
    meter = RateMeter(window=10, clock=clock)
    for _ in range(6):
        meter.record()
    clock.advance(2)
    assert meter.rate() == pytest.approx(3.0)


def test_failed_attempts_are_not_reconnects():
    clock = FakeClock()
    stats = StatsRecorder(clock)
    assert stats.disconnected("refused", 1.0) is False
    assert stats.connected() is None
    assert stats.reconnects == 0
    assert stats.failed_attempts == 1


def test_a_lost_connection_reports_its_downtime_when_back():
    clock = FakeClock()
    stats = StatsRecorder(clock)
    stats.connected()
    clock.advance(30)
    assert stats.uptime == 30
    assert stats.disconnected("closed", 2.0) is True
    assert stats.connected_since is None
    assert stats.retry_in == 2.0
    clock.advance(3)
    assert stats.disconnected("refused", 4.0) is False
    clock.advance(4)
    assert stats.connected() == pytest.approx(7)
    assert stats.reconnects == 1
    assert stats.retry_in is None


def test_events_are_counted_by_type_and_unknown_ones_separately():
    stats = StatsRecorder(FakeClock())
    stats.event("status")
    stats.event("status")
    stats.event("crystools.monitor", unknown=True)
    assert stats.by_type == {"status": 2, "crystools.monitor": 1}
    assert stats.total == 3
    assert stats.unknown == 1
