"""Held announcements: dispatch tells pages of its claims after the prompts are sent."""

from __future__ import annotations

import pytest

from tasks.models import Status
from tasks.transitions import announcements_held, task_transitioned, transition
from tests.factories import make_task

pytestmark = pytest.mark.django_db


@pytest.fixture
def heard():
    changes: list[tuple[int, str]] = []

    def listen(sender, task_id, to_status, **_):
        changes.append((task_id, to_status))

    task_transitioned.connect(listen)
    yield changes
    task_transitioned.disconnect(listen)


def test_changes_made_while_held_are_announced_after_the_block_in_order(
    heard, django_capture_on_commit_callbacks
):
    first, second = make_task(), make_task()
    with announcements_held():
        with django_capture_on_commit_callbacks(execute=True):  # their commits
            assert transition(first.pk, Status.PENDING, Status.CANCELED, message="one")
            assert transition(second.pk, Status.PENDING, Status.CANCELED, message="two")
        with announcements_held():  # nested: still held by the outer block
            pass
        assert heard == []  # committed, not yet announced
    assert heard == [(first.pk, Status.CANCELED), (second.pk, Status.CANCELED)]


def test_outside_a_held_block_a_change_is_announced_at_its_commit(
    heard, django_capture_on_commit_callbacks
):
    task = make_task()
    with django_capture_on_commit_callbacks(execute=True):
        transition(task.pk, Status.PENDING, Status.CANCELED, message="now")
    assert heard == [(task.pk, Status.CANCELED)]
