from __future__ import annotations

import pytest

from tasks.models import Status, Task, TaskEvent
from tasks.transitions import transition
from tests.factories import make_team

pytestmark = pytest.mark.django_db


def test_nul_bytes_from_a_server_are_dropped_not_a_database_error():
    task = Task.objects.create(team=make_team(), graph={"1": {"class_type": "X", "inputs": {}}})
    moved = transition(
        task.pk,
        Status.PENDING,
        Status.FAILED,
        message="failed: bad\x00name",
        error_message="RuntimeError: x\x00y",
    )
    assert moved
    task.refresh_from_db()
    assert task.error_message == "RuntimeError: xy"
    assert TaskEvent.objects.get(task=task, to_status=Status.FAILED).message == "failed: badname"
