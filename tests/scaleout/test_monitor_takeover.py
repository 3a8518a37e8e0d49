"""A monitor killed mid-run loses its servers to the other, and no task is lost or run
twice (issue 17, items 1 and 5: the suite's small version of bench/bench_scale.py).

A deployment as production runs it (tests/faults/deployment.py) with two monitors,
two worker clusters and 20 simulated ComfyUI servers served by two simulator
processes. Once the monitors have split the fleet (each holds some leases, together
all 20), 200 tasks are submitted and one monitor is killed with SIGKILL while
they run: prompts it was following end unseen, and the leases it stops renewing must
pass to the survivor, which reconciles those servers from /history and /queue. Then
every task must complete, each prompt (counted by its nonce on the simulators'
/history, whatever its status) sent exactly once.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.faults.deployment import Deployment, deployment, wait_for
from tests.scaleout.leases import held_by, lease_holders, monitor_pid, pid_of
from tests.scaleout.test_worker_clusters import count, prompts_per_nonce
from tests.servers.simulator.helpers import slow_prompt

# Starting seven processes and 20 servers takes minutes on a loaded machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SERVERS = 20
TASKS = 200
PER_SUBMISSION = 100
VICTIM, SURVIVOR = "monitor-2", "monitor"
# Bounds on waiting (never expected durations): the takeover's goal is 15 s.
SPLIT_BOUND = 120.0
TAKEOVER_BOUND = 90.0
FINISH_BOUND = 600.0


def split_between_both(d: Deployment) -> bool:
    """Each monitor holds some of the leases, and together all of them."""
    holders = Counter(pid_of(holder) for holder in lease_holders(d).values())
    pids = {monitor_pid(d, VICTIM), monitor_pid(d, SURVIVOR)}
    return set(holders) == pids and holders.total() == SERVERS


def taken_over(d: Deployment, servers: set[str]) -> bool:
    """Every one of `servers` is leased by the survivor."""
    holders = lease_holders(d)
    survivor = monitor_pid(d, SURVIVOR)
    return all(server in holders and pid_of(holders[server]) == survivor for server in servers)


def ended(d: Deployment) -> bool:
    return count(d, "completed") == TASKS or count(d, "failed") + count(d, "canceled") > 0


def unfinished(d: Deployment, batches: list[int]) -> list[tuple]:
    """What is left of the batches, for the message of a wait that gave up."""
    return [
        (t["id"], t["status"], (t["server"] or {}).get("name"), t["waiting_reason"], t["error"])
        for batch in batches
        for t in d.tasks(batch)
        if t["status"] != "completed"
    ]


def test_a_killed_monitors_servers_pass_to_the_survivor_and_every_task_runs_once(tmp_path):
    with deployment(
        tmp_path / "d",
        monitors=2,
        workers=2,
        simulators=SERVERS,
        simulator_processes=2,
    ) as d:
        wait_for(lambda: split_between_both(d), SPLIT_BOUND, "the monitors to split the fleet")
        batches = []
        for _ in range(TASKS // PER_SUBMISSION):
            graph = slow_prompt(steps=20)  # 2 s a prompt: the kill lands mid-run
            body = {"graph": graph, "count": PER_SUBMISSION, "team": d.team_id}
            response = d.post("/api/v1/tasks", body)
            assert response.status_code == 201, response.text
            batches.append(response.json()["batch"])
        wait_for(lambda: count(d, "completed") >= TASKS // 5, FINISH_BOUND, "a fifth done")

        orphaned = held_by(d, VICTIM)
        assert orphaned, "the victim held no lease when killed"
        d.kill(VICTIM)
        wait_for(lambda: taken_over(d, orphaned), TAKEOVER_BOUND, "the survivor to take over")
        assert count(d, "completed") < TASKS, "every task ended before the takeover"

        try:
            wait_for(lambda: ended(d), FINISH_BOUND, "every task to finish", every=0.5)
        except AssertionError as gave_up:
            raise AssertionError(f"{gave_up}: {unfinished(d, batches)}") from None
        tasks = [task for batch in batches for task in d.tasks(batch)]
        assert Counter(t["status"] for t in tasks) == {"completed": TASKS}, [
            (t["id"], t["status"], t["error"]) for t in tasks if t["status"] != "completed"
        ]
        d.snapshot_history()
        nonces = {t["params"]["2.nonce"] for t in tasks}
        assert len(nonces) == TASKS
        sent = prompts_per_nonce(d)
        assert {nonce: sent[nonce] for nonce in nonces if sent[nonce] != 1} == {}
        assert sum(sent.values()) == TASKS  # and no prompt of anything else
        assert set(lease_holders(d)) == {f"sim-{i + 1}" for i in range(SERVERS)}
