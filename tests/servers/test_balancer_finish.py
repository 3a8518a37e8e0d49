"""Placement by predicted finish (issue 15): the balancer's rules when a task comes
with its predicted run time on each server. Snapshots only: no database."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from servers.balancer import Policy, choose
from tests.servers.balancer_inputs import NOW, needs, snap

POLICY = Policy(affinity_window=timedelta(seconds=30))


def predicted(seconds: dict[int, float]):
    return dataclasses.replace(needs(), seconds=seconds)


def test_the_server_that_finishes_first_wins_not_the_least_loaded():
    fast = snap(1, inflight=1, backlog=2.0, weight=4)  # busy, but done in 2 s
    slow = snap(2, backlog=0.0, weight=0.5)  # idle, but takes 16 s
    decision = choose([fast, slow], predicted({1: 2.0, 2: 16.0}), POLICY, NOW)
    assert decision.server_name == "gpu-1"
    assert decision.reason == (
        "gpu-1: predicted to finish first, in 4.0 s (2.0 s to run after 2.0 s of work ahead);"
        " next gpu-2 in 16.0 s"
    )
    assert decision.candidates[0].as_dict()["finish"] == 4.0


def test_work_queued_on_a_fast_server_sends_the_task_to_a_slower_idle_one():
    fast = snap(1, inflight=1, backlog=12.0)
    slow = snap(2)
    decision = choose([fast, slow], predicted({1: 2.0, 2: 8.0}), POLICY, NOW)
    assert decision.server_name == "gpu-2"


def test_a_task_waits_for_a_full_server_that_would_still_finish_it_first():
    # The end of a batch: the fast server is full but done in 1 s; on the idle slow
    # one the last long job would take 18 s. It waits, planned on the fast one.
    fast = snap(1, inflight=2, max_inflight=2, backlog=1.0)
    slow = snap(2)
    decision = choose([fast, slow], predicted({1: 2.3, 2: 18.2}), POLICY, NOW)
    assert decision.waiting
    assert decision.planned_on == 1
    assert decision.planned_finish == 3.3
    assert decision.reason == (
        "waiting for gpu-1: predicted to finish it in 3.3 s, sooner than gpu-2 (free, 18.2 s)"
    )


def test_a_full_server_that_would_finish_later_leaves_the_task_to_a_free_one():
    fast = snap(1, inflight=2, max_inflight=2, backlog=30.0)
    slow = snap(2)
    decision = choose([fast, slow], predicted({1: 2.3, 2: 18.2}), POLICY, NOW)
    assert decision.server_name == "gpu-2"
    assert decision.planned_on is None


def test_a_full_server_that_cannot_run_the_task_is_never_waited_for():
    unhealthy = snap(1, inflight=2, max_inflight=2, health="unhealthy")
    lacking = snap(3, inflight=2, max_inflight=2, node_classes=frozenset({"SaveImage"}))
    slow = snap(2)
    graph_needs = dataclasses.replace(needs("KSampler"), seconds={1: 0.1, 2: 50.0, 3: 0.1})
    decision = choose([unhealthy, lacking, slow], graph_needs, POLICY, NOW)
    assert decision.server_name == "gpu-2"


def test_affinity_breaks_ties_of_predicted_finish_only():
    key = "models-of-v1"
    keeper = snap(1, last_affinity_key=key, last_affinity_at=NOW - timedelta(seconds=5))
    other = snap(2)
    wanted = dataclasses.replace(needs(), affinity_key=key)
    tied = choose(
        [other, keeper], dataclasses.replace(wanted, seconds={1: 3.0, 2: 3.0}), POLICY, NOW
    )
    assert tied.server_name == "gpu-1"
    later = choose(
        [other, keeper], dataclasses.replace(wanted, seconds={1: 3.5, 2: 3.0}), POLICY, NOW
    )
    assert later.server_name == "gpu-2"


def test_without_predictions_the_load_rule_is_unchanged():
    decision = choose([snap(1, queue_pending=2), snap(2, queue_pending=1)], needs(), POLICY, NOW)
    assert decision.server_name == "gpu-2"
    assert decision.reason.startswith("gpu-2: lowest load")
