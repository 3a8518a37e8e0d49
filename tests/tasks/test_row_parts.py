"""`/tasks/rows/`: the live cells of a task list's rows, which the page fetches once
its socket is subscribed (tests/tasks/test_task_list_catch_up_browser.py drives it)."""

from __future__ import annotations

import pytest
from django.test import Client

from tasks.models import Status
from tests.factories import make_task, make_team, make_user

pytestmark = pytest.mark.django_db


def test_rows_answer_with_each_visible_tasks_state_and_pictures_cells():
    team, other = make_team(), make_team()
    member = make_user(team=team)
    running = make_task(team, status=Status.RUNNING)
    done = make_task(team, status=Status.COMPLETED)
    hidden = make_task(other, status=Status.RUNNING)
    client = Client()
    client.force_login(member)

    response = client.get(f"/tasks/rows/?task={running.pk}&task={done.pk}&task={hidden.pk}")

    assert response.status_code == 200
    body = response.content.decode()
    for task in (running, done):
        assert f'id="task-row-{task.pk}-state"' in body
        assert f'id="task-row-{task.pk}-pictures"' in body
    assert "status-completed" in body
    # Another team's task is left out, as if it did not exist.
    assert f"task-row-{hidden.pk}-" not in body


def test_rows_refuse_what_is_not_a_list_of_ids_with_a_clear_error():
    client = Client()
    client.force_login(make_user(team=make_team()))
    assert client.get("/tasks/rows/?task=x").status_code == 400
    many = "&".join(f"task={n}" for n in range(1, 202))
    assert client.get(f"/tasks/rows/?{many}").status_code == 400


def test_rows_need_a_login():
    assert Client().get("/tasks/rows/?task=1").status_code == 302
