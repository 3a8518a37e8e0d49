"""Several dispatchers at once (threads, real database transactions): nothing is sent twice."""

from __future__ import annotations

from collections import Counter

import pytest

from servers.models import ServerState
from tasks import dispatch
from tasks.models import Status, Task, TaskEvent
from tests.concurrency import in_threads
from tests.django_process import DjangoProcess, shared_database
from tests.factories import make_task
from tests.simulator_thread import register

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("own_dispatch_keys"),
]


def test_concurrent_claims_never_take_one_task_twice_nor_overfill_a_server(sim_thread, tmp_path):
    # The claim step without the lock: only the conditional updates protect it.
    servers = [register(sim, max_inflight=3) for sim in sim_thread.start(2)]
    for _ in range(20):
        make_task()
    batches = in_threads(4, dispatch._claim_batch, tmp_path)
    claimed = [claim.task_id for batch in batches for claim in batch]
    assert len(claimed) == len(set(claimed)) == 6
    assert [ServerState.objects.get(server=s).inflight for s in servers] == [3, 3]
    assert Task.objects.filter(status=Status.DISPATCHED).count() == 6
    dispatched_events = TaskEvent.objects.filter(to_status=Status.DISPATCHED)
    assert not [
        t for t, n in Counter(dispatched_events.values_list("task_id", flat=True)).items() if n > 1
    ]


def test_concurrent_dispatch_jobs_send_each_task_exactly_once(sim_thread, tmp_path):
    sims = sim_thread.start(3)
    for sim in sims:
        register(sim, max_inflight=4)
    tasks = [make_task() for _ in range(12)]
    sent = in_threads(3, dispatch.dispatch_pending, tmp_path)
    assert sum(sent) == 12
    prompts = set().union(*(sim_thread.prompts_seen(sim) for sim in sims))
    ours = set(Task.objects.values_list("prompt_id", flat=True))
    assert len(ours) == len(tasks)
    # Every prompt any server ever received belongs to exactly one task.
    assert prompts == ours


HOLD_CLAIM_LOCK = """
import sys, time
from tasks import dispatch
dispatch.LOCK_KEY = sys.argv[1]
with dispatch.claim_lock() as held:
    print("lock held" if held else "lock busy", flush=True)
    time.sleep(600)
"""


@shared_database
def test_a_dispatcher_killed_holding_the_claim_lock_holds_up_no_other(sim_thread):
    (sim,) = sim_thread.start(1)
    register(sim)
    make_task()
    holder = DjangoProcess.python(HOLD_CLAIM_LOCK, dispatch.LOCK_KEY)
    try:
        assert holder.wait_for_line("lock ") == "lock held"
        with dispatch.claim_lock(wait=0.2) as held:
            assert not held  # it really holds it: others give up waiting
        holder.kill()  # mid-claim, as the OOM killer would
        # The lock is free again within seconds, not after a TTL.
        with dispatch.claim_lock(wait=3.0) as held:
            assert held
        assert dispatch.dispatch_pending() == 1
    finally:
        holder.kill()
