"""Each attempt of a task is billed once, through the real transitions."""

from __future__ import annotations

import pytest

from accounting.models import ServerCost, Usage
from accounting.recording import record_attempt
from accounting.server_clock import note_server_run
from tasks.models import Status, Task
from tasks.sweep import prompt_succeeded
from tasks.transitions import retry_or_fail, transition
from tests.factories import make_server, make_task, make_team, make_user

pytestmark = pytest.mark.django_db(transaction=True)


def run_on(task: Task, server, *, started_ms: int, ended_ms: int | None) -> None:
    """The monitor's part of one attempt: dispatched, started, and its end noted."""
    prompt = Task.new_prompt_id()
    assert transition(
        task.pk,
        Status.PENDING,
        Status.DISPATCHED,
        message="sent",
        server=server,
        prompt_id=prompt,
        attempts=task.attempts + 1,
        slot_held=False,
    )
    assert transition(task.pk, Status.DISPATCHED, Status.RUNNING, message="started")
    note_server_run(task.pk, started_ms, ended_ms)
    task.refresh_from_db()


def test_a_retried_task_is_billed_for_each_attempt_on_its_own_server():
    team = make_team()
    task = make_task(team, submitter=make_user(team=team))
    slow, fast = make_server(), make_server()
    ServerCost.objects.create(server=slow, weight=3.0)

    run_on(task, slow, started_ms=1_000, ended_ms=3_000)
    assert retry_or_fail(task.pk, Status.RUNNING, reason="server lost") == Status.PENDING
    Task.objects.filter(pk=task.pk).update(not_before=None)
    task.refresh_from_db()
    run_on(task, fast, started_ms=50_000, ended_ms=50_500)
    prompt_succeeded(task.pk, task.prompt_id)
    assert transition(task.pk, Status.RUNNING, Status.COMPLETED, message="Outputs stored")

    rows = {row.attempt: row for row in Usage.objects.filter(task_ref=task.pk)}
    assert set(rows) == {1, 2}
    assert (rows[1].server_id, rows[1].seconds, rows[1].gpu_seconds) == (slow.pk, 2.0, 6.0)
    assert (rows[1].outcome, rows[2].outcome) == (Status.PENDING, Status.COMPLETED)
    assert (rows[2].server_id, rows[2].seconds, rows[2].gpu_seconds) == (fast.pk, 0.5, 0.5)


def test_an_attempt_ended_twice_is_billed_once():
    """The monitor's event and a reconciliation both report the end: one row."""
    task = make_task(make_team())
    server = make_server()
    run_on(task, server, started_ms=0, ended_ms=1_500)
    assert transition(task.pk, Status.RUNNING, Status.FAILED, message="node raised")
    # The loser of the race finds the task moved on; a late hook call changes nothing.
    assert not transition(task.pk, Status.RUNNING, Status.FAILED, message="reconciled")
    record_attempt(task.pk, Status.RUNNING, Status.FAILED, server.pk)
    assert Usage.objects.filter(task_ref=task.pk).count() == 1
    assert Usage.objects.get(task_ref=task.pk).seconds == 1.5


def test_an_end_only_reconciliation_saw_is_billed_by_our_clock():
    """No server stamps (the monitor missed the start): running event to the end event."""
    task = make_task(make_team())
    server = make_server()
    run_on(task, server, started_ms=None, ended_ms=None)
    assert transition(task.pk, Status.RUNNING, Status.FAILED, message="lost")
    usage = Usage.objects.get(task_ref=task.pk)
    running = task.events.get(to_status=Status.RUNNING)
    failed = task.events.get(to_status=Status.FAILED)
    assert usage.started == running.at
    assert usage.ended == failed.at


def test_an_attempt_that_never_ran_is_not_billed():
    task = make_task(make_team())
    server = make_server()
    assert transition(
        task.pk,
        Status.PENDING,
        Status.DISPATCHED,
        message="sent",
        server=server,
        prompt_id=Task.new_prompt_id(),
        attempts=1,
    )
    assert transition(task.pk, Status.DISPATCHED, Status.FAILED, message="invalid prompt")
    assert not Usage.objects.filter(task_ref=task.pk).exists()
