"""A submission is answered by what was saved, whatever Redis does after the commit.

Live updates and the dispatch wake-up go to Redis once the tasks are committed;
before the fix a publish on a dead connection raised out of an on-commit hook
and the API answered 500 for a batch it had saved (and a retry made a second).
"""

from __future__ import annotations

import pytest

from tasks.models import Task
from tests.factories import trivial_graph
from tests.private_redis import redis_down

# Real commits: on-commit hooks run inside the request, as in production.
pytestmark = pytest.mark.django_db(transaction=True)


def test_a_submission_while_redis_is_down_answers_201_and_saves_the_batch(world):
    with redis_down():
        response = world.member("POST", "tasks", {"graph": trivial_graph(), "count": 3})
    assert response.status_code == 201, response.content
    body = response.json()
    assert len(body["tasks"]) == 3
    saved = Task.objects.filter(batch_id=body["batch"])
    assert sorted(saved.values_list("pk", flat=True)) == sorted(t["id"] for t in body["tasks"])


def test_cancelling_while_redis_is_down_answers_with_the_canceled_task(world):
    task_id = world.member("POST", "tasks", {"graph": trivial_graph()}).json()["tasks"][0]["id"]
    with redis_down():
        response = world.member("POST", f"tasks/{task_id}/cancel")
    assert response.status_code == 200, response.content
    assert response.json()["outcome"] == "canceled"
    assert Task.objects.get(pk=task_id).status == "canceled"
