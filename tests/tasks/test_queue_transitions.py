from __future__ import annotations

import pytest

from servers.models import ServerState
from tasks.models import Status, Task, TaskEvent
from tasks.transitions import claim_slot, free_slot, task_transitioned, transition
from tests.factories import make_server, make_task

pytestmark = pytest.mark.django_db


def inflight(server) -> int:
    return ServerState.objects.get(server=server).inflight


def test_a_transition_from_an_allowed_state_happens_once_with_one_event():
    task = make_task()
    assert transition(task.pk, Status.PENDING, Status.CANCELED, message="canceled by ann")
    assert not transition(task.pk, Status.PENDING, Status.CANCELED, message="again")
    task.refresh_from_db()
    assert task.status == Status.CANCELED
    assert task.finished_at is not None
    event = TaskEvent.objects.filter(task=task).last()
    assert (event.from_status, event.to_status, event.message) == (
        "pending",
        "canceled",
        "canceled by ann",
    )


def test_leaving_an_active_state_releases_the_server_slot_exactly_once():
    server = make_server(max_inflight=2)
    assert claim_slot(server.pk, server.max_inflight)
    task = make_task(status=Status.DISPATCHED, server=server, prompt_id="p1", slot_held=True)
    assert transition(task.pk, Status.DISPATCHED, Status.RUNNING, message="started")
    assert inflight(server) == 1  # still on the server
    assert transition(task.pk, Status.RUNNING, Status.COMPLETED, message="done")
    assert not transition(task.pk, Status.RUNNING, Status.FAILED, message="late error")
    assert inflight(server) == 0


def test_a_prompt_that_ended_gives_its_slot_back_before_its_outputs_are_collected():
    server = make_server(max_inflight=1)
    task = make_task(dispatched_to=server, status=Status.RUNNING)
    assert inflight(server) == 1
    assert not free_slot(task.pk, "an-earlier-attempt")
    assert free_slot(task.pk, task.prompt_id)
    assert not free_slot(task.pk, task.prompt_id)  # once per claim
    assert inflight(server) == 0
    assert claim_slot(server.pk, 1)  # the next prompt may go while this one is collected
    task.refresh_from_db()
    assert (task.status, task.slot_held) == (Status.RUNNING, False)
    # Completing it later gives nothing back twice: the next task keeps its slot.
    assert transition(task.pk, Status.RUNNING, Status.COMPLETED, message="outputs stored")
    assert inflight(server) == 1


def test_a_slot_freed_meanwhile_is_not_released_again_by_a_transition_that_read_it_held():
    """free_slot and a transition race: the transition's compare-and-swap includes
    slot_held, so exactly one of them releases the slot."""
    server = make_server(max_inflight=2)
    task = make_task(dispatched_to=server, status=Status.RUNNING)
    ServerState.objects.filter(server=server).update(inflight=2)  # another task holds one
    assert free_slot(task.pk, task.prompt_id)
    assert transition(task.pk, Status.RUNNING, Status.FAILED, message="lost")
    assert inflight(server) == 1


def test_slot_release_never_goes_below_zero():
    server = make_server()
    task = make_task(status=Status.RUNNING, server=server)
    assert transition(task.pk, Status.RUNNING, Status.FAILED, message="lost")
    assert inflight(server) == 0


def test_claim_slot_refuses_past_max_inflight():
    server = make_server(max_inflight=1)
    assert claim_slot(server.pk, 1)
    assert not claim_slot(server.pk, 1)


def test_where_guards_against_events_of_an_earlier_attempt():
    task = make_task(status=Status.RUNNING, prompt_id="new")
    assert not transition(
        task.pk, Status.RUNNING, Status.FAILED, message="old error", where={"prompt_id": "old"}
    )
    assert Task.objects.get(pk=task.pk).status == Status.RUNNING


def test_fields_and_timestamps_are_set_in_the_same_update():
    task = make_task()
    assert transition(
        task.pk, Status.PENDING, Status.DISPATCHED, message="sent", prompt_id="abc", attempts=1
    )
    task.refresh_from_db()
    assert (task.prompt_id, task.attempts) == ("abc", 1)
    assert task.dispatched_at is not None


def test_listeners_hear_of_a_change_after_commit(django_capture_on_commit_callbacks):
    heard = []

    def listener(**kwargs):
        heard.append((kwargs["from_status"], kwargs["to_status"]))

    task_transitioned.connect(listener)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            transition(make_task().pk, Status.PENDING, Status.CANCELED, message="x")
    finally:
        task_transitioned.disconnect(listener)
    assert heard == [("pending", "canceled")]
