"""Two worker clusters on one Redis broker and one PostgreSQL: a batch runs exactly once
(issue 17, item 2).

A deployment as production runs it (tests/faults/deployment.py) with two
`qcluster`s taking jobs from the same broker, beside the monitor and four
simulated ComfyUI servers. Both clusters wake to dispatch on the submit and
share the output collection of a batch of 100; the claims are what keeps them
from sending one task twice. Every task must complete with its outputs, every
prompt (counted by its nonce on the simulators' /history, whatever its status)
must have been sent exactly once, and each cluster must have done some of the
work, or the test would prove nothing about two.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.faults.deployment import Deployment, deployment, wait_for
from tests.servers.simulator.helpers import slow_prompt

pytestmark = pytest.mark.slow

BATCH = 100
WORKERS = ("worker", "worker-2")
FINISH_BOUND = 300.0


def ended(d: Deployment, batch: int) -> bool:
    """Every task completed, or one failed or was canceled (the assertions say which)."""
    counts = {
        status: d.get("/api/v1/tasks", batch=batch, status=status, page_size=1).json()["count"]
        for status in ("completed", "failed", "canceled")
    }
    return counts["completed"] == BATCH or counts["failed"] + counts["canceled"] > 0


def prompts_per_nonce(d: Deployment) -> Counter[int]:
    """How many prompts each nonce was sent in, finished or not."""
    return Counter(entry["prompt"][2]["2"]["inputs"]["nonce"] for entry in d.history.values())


def jobs_run(d: Deployment, worker: str) -> Counter[str]:
    """Job function -> how many times this cluster ran it (django-q2's "processing" lines)."""
    lines = d.logs(worker, tail=100_000).splitlines()
    return Counter(line.rsplit("'", 2)[-2] for line in lines if " processing " in line)


def test_two_worker_clusters_run_every_task_of_a_batch_exactly_once(tmp_path):
    with deployment(tmp_path / "d", workers=len(WORKERS), simulators=4) as d:
        response = d.post(
            "/api/v1/tasks", {"graph": slow_prompt(steps=1), "count": BATCH, "team": d.team_id}
        )
        assert response.status_code == 201, response.text
        batch = response.json()["batch"]
        wait_for(lambda: ended(d, batch), FINISH_BOUND, "every task to finish", every=0.5)

        tasks = d.tasks(batch)
        assert Counter(t["status"] for t in tasks) == {"completed": BATCH}, [
            (t["id"], t["status"], t["error"]) for t in tasks if t["status"] != "completed"
        ]
        assert all(task["outputs"] for task in tasks)
        d.snapshot_history()
        nonces = {t["params"]["2.nonce"] for t in tasks}
        assert len(nonces) == BATCH
        sent = prompts_per_nonce(d)
        assert {nonce: sent[nonce] for nonce in nonces if sent[nonce] != 1} == {}
        assert sum(sent.values()) == BATCH  # and no prompt of anything else
        for worker in WORKERS:
            assert jobs_run(d, worker)["tasks.jobs.collect_outputs"] > 0, d.logs(worker)
