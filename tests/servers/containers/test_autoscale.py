"""The autoscaler's decision on plain values: desired size, what starts, what drains."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from servers.containers.autoscale import (
    ContainerView,
    PoolView,
    can_run,
    decide,
    next_idle_due,
    pending_for,
)
from servers.requirements import Requirements

NOW = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)


def pool(**fields) -> PoolView:
    defaults = {
        "name": "sdxl",
        "min_size": 0,
        "max_size": 4,
        "jobs_per_container": 2,
        "idle_seconds": 60,
    }
    return PoolView(**(defaults | fields))


def running(container_id: int, inflight: int = 0, idle_for: float | None = None) -> ContainerView:
    idle_since = None if idle_for is None else NOW - timedelta(seconds=idle_for)
    return ContainerView(container_id, "running", inflight, idle_since)


def starting(container_id: int) -> ContainerView:
    return ContainerView(container_id, "starting")


def test_an_empty_pool_grows_for_the_first_task():
    decision = decide(pool(), [], pending=1, now=NOW)
    assert (decision.desired, decision.start, decision.action) == (1, 1, "start 1")
    assert decision.reason == "1 waiting + 0 in flight ÷ 2 per container = 1"


def test_a_burst_starts_every_missing_container_at_once_up_to_the_maximum():
    decision = decide(pool(), [starting(1)], pending=20, now=NOW)
    assert (decision.desired, decision.start) == (4, 3)
    assert decision.reason.endswith("= 10, kept between 0 and 4")


def test_work_in_flight_counts_so_busy_containers_are_not_shrunk():
    decision = decide(pool(), [running(1, inflight=2), running(2, inflight=2)], 0, NOW)
    assert (decision.desired, decision.start, decision.drain) == (2, 0, ())
    assert decision.action == "hold"


def test_the_minimum_is_kept_with_no_work():
    decision = decide(pool(min_size=1), [running(1, idle_for=3600)], 0, NOW)
    assert (decision.desired, decision.drain) == (1, ())


def test_only_containers_idle_for_the_idle_seconds_are_drained_longest_idle_first():
    containers = [running(1, idle_for=30), running(2, idle_for=90), running(3, idle_for=300)]
    decision = decide(pool(), containers, 0, NOW)
    assert decision.desired == 0
    assert decision.drain == (3, 2)
    assert decision.reason.endswith("1 more to drain once idle for 60 s")


def test_a_starting_container_is_not_scaled_down_by_the_queue():
    decision = decide(pool(), [starting(1)], 0, NOW)
    assert (decision.desired, decision.drain) == (0, ())


def test_a_pool_backing_off_after_crashes_starts_nothing_and_says_until_when():
    backoff = NOW + timedelta(seconds=40)
    decision = decide(pool(backoff_until=backoff, failures_in_row=3), [], 5, NOW)
    assert (decision.desired, decision.start) == (3, 0)
    assert "3 to start after the crash backoff (3 failed in a row, until 12:00:40)" in (
        decision.reason
    )


def test_a_backoff_that_ended_lets_it_grow():
    decision = decide(pool(backoff_until=NOW - timedelta(seconds=1)), [], 1, NOW)
    assert decision.start == 1


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"pinned_size": 1}, "pinned to 1 by staff (max 4)"),
        ({"enabled": False, "pinned_size": 3}, "the pool is disabled"),
        ({"deleting": True}, "the pool is being deleted"),
    ],
)
def test_staff_sizes_drain_the_least_loaded_at_once_idle_or_not(fields, reason):
    containers = [running(1, inflight=2), running(2, inflight=1), starting(3)]
    decision = decide(pool(**fields), containers, pending=30, now=NOW)
    assert decision.reason == reason
    assert decision.drain == ((3, 2) if decision.desired == 1 else (3, 2, 1))


def test_a_pin_above_the_maximum_is_held_to_the_maximum():
    decision = decide(pool(pinned_size=9), [], 0, NOW)
    assert (decision.desired, decision.start) == (4, 4)


def test_next_idle_due_is_the_first_idle_container_that_is_not_due_yet():
    containers = [running(1, idle_for=10), running(2, idle_for=50), running(3, inflight=1)]
    assert next_idle_due(pool(), containers, NOW) == NOW + timedelta(seconds=10)
    assert next_idle_due(pool(), [running(1, idle_for=120)], NOW) is None


SDXL = Requirements(
    node_classes=frozenset({"KSampler", "SDXLLoader"}),
    model_files=frozenset({("checkpoints", "sdxl.safetensors")}),
)
FLUX = Requirements(node_classes=frozenset({"FluxLoader"}))


def test_a_pool_that_never_reported_is_assumed_able_to_run_anything():
    assert can_run(FLUX, None, None)
    assert pending_for([(SDXL, 3), (FLUX, 2)], None, None) == 5


def test_a_pool_counts_only_the_work_its_remembered_nodes_and_models_run():
    classes = ["KSampler", "SDXLLoader"]
    models = {"checkpoints": ["sdxl.safetensors"]}
    assert pending_for([(SDXL, 3), (FLUX, 2)], classes, models) == 3
    assert not can_run(SDXL, classes, {"checkpoints": ["other.safetensors"]})
    assert can_run(SDXL, classes, None)
