"""Reconciliation: tasks we think are on a server, checked against its /queue and /history."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from servers.models import Health, ServerState
from servers.simulator import SimulatorConfig
from tasks import dispatch, reconcile
from tasks.models import Status, Task
from tasks.transitions import failed_servers
from tests.factories import make_task
from tests.simulator_thread import register

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("own_dispatch_keys")]

LONG_AGO = timedelta(minutes=30)


def on_server(server, *, prompt_id: str = "not-there", status=Status.DISPATCHED, **fields):
    """A task dispatch sent to `server` (its first run unless `attempts` says otherwise)."""
    ServerState.objects.filter(server=server).update(inflight=1)
    fields.setdefault("attempts", 1)
    fields.setdefault("slot_held", True)
    return make_task(
        status=status,
        server=server,
        prompt_id=prompt_id,
        dispatched_at=timezone.now() - LONG_AGO,
        **fields,
    )


def sent_and_finished(sims, sim) -> Task:
    """A task really sent to `sim` and finished there, with no monitor to tell us."""
    task = make_task()
    assert dispatch.dispatch_pending() == 1
    sims.wait_idle(sim)
    Task.objects.filter(pk=task.pk).update(dispatched_at=timezone.now() - LONG_AGO)
    return Task.objects.get(pk=task.pk)


def test_a_lost_prompt_goes_back_to_pending_its_run_counted_once(sim_thread):
    (sim,) = sim_thread.start(1)
    server = register(sim)
    task = on_server(server)
    assert reconcile.reconcile_server(server.pk) == {"lost": 1}
    task.refresh_from_db()
    assert task.status == Status.PENDING
    assert task.attempts == 1
    assert task.not_before > timezone.now()
    assert ServerState.objects.get(server=server).inflight == 0


def test_a_lost_prompt_on_its_last_attempt_fails(sim_thread):
    (sim,) = sim_thread.start(1)
    server = register(sim)
    task = on_server(server, attempts=3, max_attempts=3)
    reconcile.reconcile_server(server.pk)
    task.refresh_from_db()
    assert task.status == Status.FAILED
    assert "gave up after 3 attempts" in task.error_message


def test_a_lost_prompt_whose_cancel_was_requested_ends_canceled(sim_thread):
    (sim,) = sim_thread.start(1)
    server = register(sim)
    task = on_server(server, cancel_requested=True)
    reconcile.reconcile_server(server.pk)
    assert Task.objects.get(pk=task.pk).status == Status.CANCELED


def test_a_prompt_the_server_accepted_moments_ago_and_forgot_is_lost_at_once(sim_thread):
    # Its lease is cleared: the server accepted it, then lost it (it restarted).
    # Waiting would only leave it stuck until the next stuck-task sweep, minutes away.
    (sim,) = sim_thread.start(1)
    server = register(sim)
    task = on_server(server)
    Task.objects.filter(pk=task.pk).update(dispatched_at=timezone.now(), sending_until=None)
    assert reconcile.reconcile_server(server.pk) == {"lost": 1}
    assert Task.objects.get(pk=task.pk).status == Status.PENDING


def test_a_prompt_that_succeeded_unseen_is_handed_to_output_collection(sim_thread, enqueued):
    (sim,) = sim_thread.start(1)
    register(sim)
    task = sent_and_finished(sim_thread, sim)
    assert reconcile.reconcile_server(task.server_id) == {"succeeded": 1}
    # Its slot goes to the next task first; the collector completes it meanwhile.
    assert enqueued == [("tasks.jobs.dispatch",), ("tasks.jobs.collect_outputs", task.pk)]
    task.refresh_from_db()
    assert (task.status, task.slot_held) == (Status.DISPATCHED, False)
    assert ServerState.objects.get(server_id=task.server_id).inflight == 0


def test_a_prompt_that_failed_unseen_fails_with_the_servers_error(sim_thread):
    (sim,) = sim_thread.start(1, config=SimulatorConfig(time_scale=0.1, failure_rate=1.0))
    register(sim)
    task = sent_and_finished(sim_thread, sim)
    assert reconcile.reconcile_server(task.server_id) == {"failed": 1}
    task.refresh_from_db()
    assert task.status == Status.FAILED
    assert task.error_type
    assert task.error_node


def test_a_prompt_still_queued_or_running_is_left_alone(sim_thread):
    slow = SimulatorConfig(time_scale=1.0, node_seconds={"KSampler": 30.0})
    (sim,) = sim_thread.start(1, config=slow)
    server = register(sim, max_inflight=2)
    make_task(), make_task()
    assert dispatch.dispatch_pending() == 2
    Task.objects.update(dispatched_at=timezone.now() - LONG_AGO)
    verdicts = reconcile.reconcile_server(server.pk)
    assert sum(verdicts.values()) == 2
    assert set(verdicts) <= {"running", "queued"}
    assert Task.objects.filter(status__in=Status.active()).count() == 2


def test_a_server_marked_down_has_its_tasks_retried_elsewhere(sim_thread):
    (sim,) = sim_thread.start(1)
    server = register(sim)
    task = on_server(server, prompt_id="p-1")
    sim_thread.run(sim.stop())
    ServerState.objects.filter(server=server).update(health=Health.UNHEALTHY)
    assert reconcile.reconcile_server(server.pk) == {"lost": 1}
    assert Task.objects.get(pk=task.pk).status == Status.PENDING


def test_a_server_that_merely_did_not_answer_decides_nothing_yet(sim_thread):
    (sim,) = sim_thread.start(1)
    server = register(sim)
    task = on_server(server, prompt_id="p-1")
    sim_thread.run(sim.stop())
    assert reconcile.reconcile_server(server.pk) == {"unreachable": 1}
    assert Task.objects.get(pk=task.pk).status == Status.DISPATCHED


def test_the_schedule_checks_only_tasks_on_a_server_for_too_long(sim_thread, settings):
    settings.COMFYWEB_RECONCILE_AFTER = 600
    (sim,) = sim_thread.start(1)
    server = register(sim)
    old = on_server(server, prompt_id="old")
    recent = on_server(server, prompt_id="recent")
    Task.objects.filter(pk=recent.pk).update(dispatched_at=timezone.now() - timedelta(minutes=2))
    assert reconcile.reconcile_stuck() == {"lost": 1}
    assert Task.objects.get(pk=old.pk).status == Status.PENDING
    assert Task.objects.get(pk=recent.pk).status == Status.DISPATCHED


def test_tasks_of_a_deleted_server_are_retried(sim_thread):
    (sim,) = sim_thread.start(1)
    server = register(sim)
    task = on_server(server)
    server.delete()
    assert reconcile.reconcile_stuck() == {"lost": 1}
    assert Task.objects.get(pk=task.pk).status == Status.PENDING


def test_a_drifted_slot_count_is_corrected_to_the_tasks_holding_the_servers_slots():
    from tests.factories import make_server

    busy, leaked = make_server(), make_server()
    make_task(status=Status.RUNNING, server=busy, slot_held=True)
    make_task(status=Status.RUNNING, server=busy, slot_held=False)  # its outputs are collected
    ServerState.objects.filter(server=busy).update(inflight=0)
    ServerState.objects.filter(server=leaked).update(inflight=2)
    assert dispatch.resync_slots() == 2
    assert ServerState.objects.get(server=busy).inflight == 1
    assert ServerState.objects.get(server=leaked).inflight == 0
    assert dispatch.resync_slots() == 0


def test_a_prompt_whose_dispatcher_died_before_sending_it_is_queued_again_uncounted(sim_thread):
    (sim,) = sim_thread.start(1)
    server = register(sim)
    # Claimed (run 1 counted), never posted: the lease ran out with its dispatcher.
    task = on_server(server, sending_until=timezone.now() - timedelta(seconds=1))
    assert reconcile.reconcile_server(server.pk) == {"never sent": 1}
    task.refresh_from_db()
    assert task.status == Status.PENDING
    assert task.attempts == 0  # nothing ran
    assert task.not_before is None  # no backoff: nothing failed
    assert failed_servers(task.pk) == set()  # nor is the server held against it
    assert ServerState.objects.get(server=server).inflight == 0


def test_a_prompt_still_being_sent_is_left_to_its_dispatcher(sim_thread):
    (sim,) = sim_thread.start(1)
    server = register(sim)
    task = on_server(server, sending_until=timezone.now() + timedelta(seconds=5))
    assert reconcile.reconcile_server(server.pk) == {"in flight": 1}
    assert Task.objects.get(pk=task.pk).status == Status.DISPATCHED


def test_a_never_sent_task_whose_cancel_was_requested_ends_canceled(sim_thread):
    (sim,) = sim_thread.start(1)
    server = register(sim)
    past = timezone.now() - timedelta(seconds=1)
    task = on_server(server, sending_until=past, cancel_requested=True)
    assert reconcile.reconcile_server(server.pk) == {"never sent": 1}
    assert Task.objects.get(pk=task.pk).status == Status.CANCELED


def test_a_prompt_the_server_has_was_sent_whatever_became_of_its_dispatcher(sim_thread, enqueued):
    (sim,) = sim_thread.start(1)
    register(sim)
    task = sent_and_finished(sim_thread, sim)
    # Its dispatcher died after the POST, before it noted the server's yes.
    past = timezone.now() - timedelta(seconds=1)
    Task.objects.filter(pk=task.pk).update(sending_until=past)
    assert reconcile.reconcile_server(task.server_id) == {"succeeded": 1}
    task.refresh_from_db()
    assert task.sending_until is None
    assert task.attempts == 1
    assert task.collect_requested_at is not None
