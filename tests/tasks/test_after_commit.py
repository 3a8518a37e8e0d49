"""Nothing that happens after a commit turns saved work into an error.

Publishing to browsers and waking dispatch are best effort: they run once the
work is committed (on-commit hooks, `task_transitioned` listeners), and what
they fail at is logged, never raised into the request or the caller.
"""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django_q.conf import Conf

from tasks import enqueue
from tasks.models import Status, Task
from tasks.transitions import task_transitioned, transition
from teams.models import Role
from tests.factories import make_task, make_team, make_user, make_workflow, shared_workflow
from tests.private_redis import redis_down
from tests.serve_process import free_port

pytestmark = pytest.mark.django_db(transaction=True)


def test_running_a_workflow_while_redis_is_down_redirects_and_saves_the_tasks(client):
    team = make_team("Studio")
    client.force_login(make_user("ada", team=team, role=Role.MEMBER))
    workflow = make_workflow(team, "Portraits")
    with redis_down():
        response = client.post(f"/workflows/{workflow.pk}/run/", {"priority": 1, "count": 3})
        assert response.status_code == 302, response.content[:500]
        assert client.get(response["Location"]).status_code == 200
    assert Task.objects.filter(workflow_version__workflow=workflow).count() == 3


def test_a_state_change_stands_when_a_listener_raises_and_the_others_still_hear_it():
    heard = []

    def broken(**kwargs):
        raise RuntimeError("listener bug")

    def listener(**kwargs):
        heard.append(kwargs["to_status"])

    task_transitioned.connect(broken)
    task_transitioned.connect(listener)
    try:
        task = make_task(status=Status.PENDING, graph=shared_workflow("empty_save"))
        assert transition(task.pk, Status.PENDING, Status.CANCELED, message="x")
    finally:
        task_transitioned.disconnect(broken)
        task_transitioned.disconnect(listener)
    assert Task.objects.get(pk=task.pk).status == Status.CANCELED
    assert heard == [Status.CANCELED]


def test_a_wake_up_the_broker_refused_returns_and_lets_the_next_one_try_again(monkeypatch):
    monkeypatch.setattr(Conf, "REDIS", f"redis://127.0.0.1:{free_port()}/0")  # nothing listens
    cache.delete(enqueue.WAKE_KEY)
    enqueue.wake_dispatch()  # returns: the one-minute schedule dispatches meanwhile
    assert cache.add(enqueue.WAKE_KEY, 1, timeout=5), "the failed wake-up kept its dedup key"
