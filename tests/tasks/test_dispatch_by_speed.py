"""Dispatch places tasks by measured speed (issue 15): where they finish first,
leaving a slow server idle rather than handing it the last long job, and the
speeds it goes by are learned from the runs the monitor follows."""

from __future__ import annotations

import copy
import pathlib

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from servers import speed
from servers.models import BalancerDecision, Server, ServerSpeed
from servers.simulator import SimulatedComfyUI
from tasks import dispatch
from tasks.models import Priority, Status, Task
from tests.factories import capable_state, make_server, make_task, make_team, shared_workflow
from tests.monitoring import wait_until, watching
from tests.simulator_thread import register

# What the simulator offers that `job()` uses.
NODES = ["EmptyImage", "SlowProgress", "SaveImage"]


def job(steps: int, nonce: int = 0) -> dict:
    graph = copy.deepcopy(shared_workflow("slow_progress"))
    graph["2"]["inputs"] |= {"steps": steps, "nonce": nonce}
    return graph


def measured(server, seconds_per_step: float) -> None:
    ServerSpeed.objects.create(
        server=server,
        key=speed.speed_key_of(job(1)),
        seconds_per_unit=seconds_per_step,
        last_seconds_per_unit=seconds_per_step,
        samples=10,
    )


@pytest.fixture
def fleet(db):
    """A fast server (0.1 s a step) running a prompt nearly done, and an idle slow
    one (1 s a step), both able to run `job()`."""
    team = make_team()
    fast = make_server("fast", max_inflight=1, state=capable_state(node_classes=NODES))
    slow = make_server("slow", max_inflight=1, state=capable_state(node_classes=NODES))
    measured(fast, 0.1)
    measured(slow, 1.0)
    make_task(
        team,
        graph=job(10, nonce=1),
        dispatched_to=fast,
        status=Status.RUNNING,
        started_at=timezone.now(),
    )
    return team, fast, slow


def test_the_last_long_job_waits_for_the_fast_server_instead_of_going_to_the_idle_slow_one(
    fleet,
):
    team, fast, slow = fleet
    last = make_task(team, graph=job(20, nonce=2))  # fast: 1 s ahead + 2 s; slow: 20 s

    assert dispatch._claim_batch() == []

    last.refresh_from_db()
    assert last.status == Status.PENDING
    assert not Task.objects.filter(server=slow).exists()
    # Measured slower than it is configured, the busy server is no longer waited for.
    ServerSpeed.objects.filter(server=fast).update(seconds_per_unit=5.0)
    assert [c.server_name for c in dispatch._claim_batch()] == ["slow"]


def test_a_slow_server_gets_work_once_the_fast_one_has_enough_queued(fleet):
    team, fast, slow = fleet
    # 30 jobs of 20 steps: 2 s each on the fast server, 20 s on the slow one. The
    # slow one finishes one of them before the fast one would have reached it.
    for nonce in range(2, 32):
        make_task(team, graph=job(20, nonce=nonce))

    claimed = dispatch._claim_batch()

    assert [c.server_name for c in claimed] == ["slow"]
    assert Task.objects.filter(server=slow, status=Status.DISPATCHED).count() == 1
    assert Task.objects.filter(server=fast, status=Status.PENDING).count() == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("sync_jobs")
async def test_speeds_are_learned_from_the_runs_the_monitor_follows(tmp_path: pathlib.Path):
    # Two simulators, one four times slower: each run is timed by the server's own
    # execution_start and execution_success, so the learned rates keep that order.
    quick = SimulatedComfyUI("127.0.0.1", 0, data_dir=tmp_path / "quick", time_scale=0.05)
    slow = SimulatedComfyUI("127.0.0.1", 0, data_dir=tmp_path / "slow", time_scale=0.2)
    await quick.start()
    await slow.start()
    try:
        servers = [await sync_to_async(register)(sim, node_classes=NODES) for sim in (quick, slow)]

        def submit() -> None:
            team = make_team()
            for nonce in range(4):
                make_task(team, graph=job(20, nonce=100 + nonce))

        await sync_to_async(submit)()
        async with watching(servers[0]) as monitor:  # it follows every enabled server
            await wait_until(
                lambda: (
                    servers[1].pk in monitor.watchers
                    and monitor.watchers[servers[1].pk].stream_stats.connected
                ),
                what="the second server's event stream",
            )
            assert await sync_to_async(dispatch.dispatch_pending)() == 4
            await wait_until(
                lambda: Task.objects.filter(status=Status.COMPLETED).count() == 4,
                within=60,
                what="all four runs",
            )
            # Each run is measured as it ends on its server, outputs collected or not.
            await wait_until(
                lambda: (
                    sum(
                        ServerSpeed.objects.filter(server__in=servers).values_list(
                            "samples", flat=True
                        )
                    )
                    == 4
                ),
                what="every run measured",
            )
    finally:
        await quick.stop()
        await slow.stop()

    learned = {row.server_id: row async for row in ServerSpeed.objects.filter(server__in=servers)}
    fast_rate = learned[servers[0].pk].seconds_per_unit
    slow_rate = learned[servers[1].pk].seconds_per_unit
    assert fast_rate < slow_rate
    # A server is never measured faster than it is: 0.2 s a step times its scale.
    assert fast_rate >= 0.2 * 0.05
    assert slow_rate >= 0.2 * 0.2


def test_a_lower_priority_does_not_take_the_free_server_a_higher_one_waits_out(fleet):
    team, _fast, slow = fleet
    urgent = make_task(team, graph=job(20, nonce=2), priority=Priority.HIGH)  # waits for fast
    low = make_task(team, graph=job(1, nonce=3), priority=Priority.LOW)  # fits slow at once

    assert dispatch._claim_batch() == []

    assert set(
        Task.objects.filter(pk__in=[urgent.pk, low.pk]).values_list("status", flat=True)
    ) == {Status.PENDING}
    assert not Task.objects.filter(server=slow).exists()


def test_a_pass_reads_only_the_graphs_it_has_not_learned_from(db):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    team = make_team()
    make_server("only", max_inflight=1, state=capable_state(node_classes=NODES))
    for nonce in range(30):  # a seed sweep: one workflow key
        make_task(team, graph=job(20, nonce=nonce))
    assert len(dispatch._claim_batch()) == 1  # learns the key from the first graph it reads

    with CaptureQueriesContext(connection) as queries:
        assert dispatch._claim_batch() == []  # the server is full: all wait for it
    graph_reads = [q["sql"] for q in queries if '"graph"' in q["sql"]]
    assert graph_reads == []


@pytest.mark.parametrize(("tasks", "claims", "more"), [(15, 1, False), (30, 2, True)])
def test_a_pass_says_another_could_claim_more_only_when_it_ran_out_of_room(
    fleet, tasks, claims, more
):
    team, _fast, slow = fleet
    slow.max_inflight = 2
    slow.save(update_fields=["max_inflight"])
    for nonce in range(2, 2 + tasks):  # 2 s each on the fast server, 20 s on the slow one
        make_task(team, graph=job(20, nonce=nonce))

    claimed = dispatch.claim_batch()

    # 15: the slow server takes the one it finishes before the fast one would reach
    # it, the rest wait for the fast one: its other slot stays free, and asking again
    # at once would change nothing. 30: it takes two, and the pass stops with no
    # room left: another may find a slot freed meanwhile.
    assert [c.server_name for c in claimed] == ["slow"] * claims
    assert claimed.more is more


def test_a_pass_asks_the_database_as_often_whatever_the_number_of_candidates(fleet):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    team, _fast, _slow = fleet

    def queries_of_a_pass_over(candidates: int) -> int:
        while Task.objects.filter(status=Status.PENDING).count() < candidates:
            make_task(team, graph=job(20, nonce=100 + Task.objects.count()))
        with CaptureQueriesContext(connection) as queries:
            # Every one is asked about and waits for the fast server (2 s each there,
            # 20 s on the idle slow one).
            assert dispatch._claim_batch() == []
        return len(queries)

    queries_of_a_pass_over(3)  # learns what the workflow needs from its first graph
    # Nothing is read per candidate (a field left out of the candidates' query
    # would be one query each).
    assert queries_of_a_pass_over(3) == queries_of_a_pass_over(6)


def test_a_pass_writes_its_decisions_in_one_insert_and_reads_the_deployment_once(db):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    team = make_team()
    servers = [
        make_server(name, max_inflight=2, state=capable_state(node_classes=NODES))
        for name in ("a", "b", "c")
    ]
    for server in servers:
        measured(server, 0.1)
    for nonce in range(6):
        make_task(team, graph=job(5, nonce=nonce))

    with CaptureQueriesContext(connection) as queries:
        claimed = dispatch._claim_batch()

    assert len(claimed) == 6
    decisions = BalancerDecision.objects.order_by("pk")
    # One row per claim, in the order they were made, naming the server it went to.
    assert [d.chosen.name for d in decisions] == [c.server_name for c in claimed]
    statements = [q["sql"] for q in queries.captured_queries]
    assert sum(s.startswith('INSERT INTO "servers_balancerdecision"') for s in statements) == 1
    assert sum('FROM "servers_fleetsettings"' in s for s in statements) == 2  # policy, ids
    for claim in claimed:
        server = Server.objects.get(pk=claim.server_id)
        assert claim.client_id == server.client_id  # never leased: the server's own
