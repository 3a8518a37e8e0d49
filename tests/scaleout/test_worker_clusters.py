"""Two worker clusters on one Redis broker and one PostgreSQL: a batch runs exactly once
(issue 17, item 2).

A deployment as production runs it (tests/faults/deployment.py) with two
`qcluster`s taking jobs from the same broker, beside the monitor and four
simulated ComfyUI servers. Ten submissions of 10 tasks arrive at once, each
waking dispatch (a job unless one is queued already) that either cluster may
run while the other's and the monitor's passes run too, and the clusters share
the output collection; the claims are what keeps them from sending one task
twice. Every task must
complete with its outputs, every prompt (counted by its nonce on the
simulators' /history, whatever its status) must have been sent exactly once,
and each cluster must have collected some of the outputs, or the test would
prove nothing about two.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.faults.deployment import Deployment, deployment, wait_for
from tests.servers.simulator.helpers import slow_prompt

pytestmark = pytest.mark.slow

SUBMISSIONS = 10
PER_SUBMISSION = 10
BATCH = SUBMISSIONS * PER_SUBMISSION
WORKERS = ("worker", "worker-2")
FINISH_BOUND = 300.0


def submit(d: Deployment) -> int:
    """One submission of PER_SUBMISSION tasks (each given a seed of its own); its batch."""
    graph = slow_prompt(steps=1)
    response = d.post("/api/v1/tasks", {"graph": graph, "count": PER_SUBMISSION, "team": d.team_id})
    assert response.status_code == 201, response.text
    return response.json()["batch"]


def count(d: Deployment, status: str) -> int:
    return d.get("/api/v1/tasks", status=status, page_size=1).json()["count"]


def ended(d: Deployment) -> bool:
    """Every task completed, or one failed or was canceled (the assertions say which)."""
    return count(d, "completed") == BATCH or count(d, "failed") + count(d, "canceled") > 0


def prompts_per_nonce(d: Deployment) -> Counter[int]:
    """How many prompts each nonce was sent in, finished or not."""
    return Counter(entry["prompt"][2]["2"]["inputs"]["nonce"] for entry in d.history.values())


def jobs_run(d: Deployment, worker: str) -> Counter[str]:
    """Job function -> how many times this cluster ran it (django-q2's "processing" lines)."""
    lines = d.logs(worker, tail=100_000).splitlines()
    return Counter(line.rsplit("'", 2)[-2] for line in lines if " processing " in line)


def test_two_worker_clusters_run_every_task_of_a_batch_exactly_once(tmp_path):
    with deployment(tmp_path / "d", workers=len(WORKERS), simulators=4) as d:
        with ThreadPoolExecutor(SUBMISSIONS) as pool:
            batches = list(pool.map(lambda _: submit(d), range(SUBMISSIONS)))
        wait_for(lambda: ended(d), FINISH_BOUND, "every task to finish", every=0.5)

        tasks = [task for batch in batches for task in d.tasks(batch)]
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
