"""`Idempotency-Key`: a retried submission gets the first answer and makes nothing twice."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.db.models.signals import post_save
from django.test import Client

from api.api import api
from api.idempotency import HEADER, REUSED, forget_expired
from api.models import IdempotentRequest
from tasks.models import Batch, Task
from tests.api.callers import Caller, error_of
from tests.factories import trivial_graph
from workflows.models import Workflow

pytestmark = pytest.mark.django_db
KEY = "5f0c6b2e-retry-me"


def post(caller, path: str, body, key: str | None = KEY):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {caller.token}"}
    if key is not None:
        headers["HTTP_IDEMPOTENCY_KEY"] = key
    data = body if isinstance(body, str) else json.dumps(body)
    return caller.client.post(
        f"/api/v1/{path}", data=data, content_type="application/json", **headers
    )


def test_the_same_key_and_body_answer_as_the_first_time_and_submit_nothing_more(world):
    body = {"graph": trivial_graph(seed=7), "count": 3}
    first = post(world.member, "tasks", body)
    again = post(world.member, "tasks", body)
    assert first.status_code == again.status_code == 201
    assert again.content == first.content  # the same batch and task ids, byte for byte
    assert Batch.objects.count() == 1
    assert Task.objects.count() == 3


def test_the_same_key_with_another_body_is_a_422_and_submits_nothing(world):
    post(world.member, "tasks", {"graph": trivial_graph(seed=7)})
    response = post(world.member, "tasks", {"graph": trivial_graph(seed=8)})
    assert response.status_code == 422
    assert error_of(response)["type"] == REUSED
    assert Task.objects.count() == 1


def test_the_same_key_on_another_operation_is_a_422(world):
    post(world.member, "tasks", {"graph": trivial_graph(seed=7)})
    response = post(world.member, "workflows", {"name": "w", "graph": trivial_graph()})
    assert response.status_code == 422
    assert not Workflow.objects.exists()


def test_keys_are_each_users_own(world):
    body = {"graph": trivial_graph(seed=7)}
    mine = post(world.member, "tasks", body).json()["tasks"][0]["id"]
    theirs = post(world.admin, "tasks", body).json()["tasks"][0]["id"]
    assert mine != theirs
    assert Task.objects.count() == 2


def test_without_a_key_every_request_submits(world):
    body = {"graph": trivial_graph(seed=7)}
    post(world.member, "tasks", body, key=None)
    post(world.member, "tasks", body, key=None)
    assert Task.objects.count() == 2
    assert not IdempotentRequest.objects.exists()


def test_a_refused_request_keeps_no_key(world):
    refused = post(world.member, "tasks", {"graph": trivial_graph(), "count": 0})
    assert refused.status_code == 400
    assert post(world.member, "tasks", {"graph": trivial_graph()}).status_code == 201
    assert Task.objects.count() == 1


def test_a_key_is_forgotten_after_24_hours(world):
    body = {"graph": trivial_graph(seed=7)}
    first = post(world.member, "tasks", body).json()["tasks"][0]["id"]
    _age(KEY, timedelta(hours=25))
    second = post(world.member, "tasks", body).json()["tasks"][0]["id"]
    assert second != first
    assert IdempotentRequest.objects.count() == 1  # the old answer went, the new one is kept


def _age(key: str, by: timedelta) -> None:
    row = IdempotentRequest.objects.get(key=key)
    IdempotentRequest.objects.filter(pk=row.pk).update(created_at=row.created_at - by)


def test_the_schedule_forgets_expired_keys_only(world):
    post(world.member, "tasks", {"graph": trivial_graph(seed=7)})
    post(world.member, "tasks", {"graph": trivial_graph(seed=8)}, key="another")
    _age(KEY, timedelta(hours=25))
    assert forget_expired() == 1
    assert list(IdempotentRequest.objects.values_list("key", flat=True)) == ["another"]


def test_a_workflow_upload_is_made_once(world):
    body = {"name": "Once", "graph": trivial_graph()}
    first, again = post(world.member, "workflows", body), post(world.member, "workflows", body)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json()["id"] == first.json()["id"]
    assert Workflow.objects.count() == 1


@pytest.mark.parametrize("key", ["", " ", "a b", "é", "x" * 256, "tab\there"])
def test_a_malformed_key_is_a_400_with_the_error_envelope(world, key):
    response = post(world.member, "tasks", {"graph": trivial_graph()}, key=key)
    assert response.status_code == 400, response.content
    assert error_of(response)["type"] == "validation_error"
    assert not Task.objects.exists()


def test_the_schema_documents_the_header_on_the_creating_posts():
    paths = api.get_openapi_schema(path_prefix="/api/v1")["paths"]
    for path in ("/api/v1/tasks", "/api/v1/workflows", "/api/v1/templates", "/api/v1/servers"):
        operation = paths[path]["post"]
        (header,) = [p for p in operation["parameters"] if p["name"] == HEADER]
        assert header["in"] == "header"
        assert not header.get("required", False)
        assert 422 in operation["responses"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicates_submit_once_and_both_get_the_first_answer(world):
    """The second request arrives while the first is still inside its transaction."""
    first_inside, answers = threading.Event(), {}
    body = {"graph": trivial_graph(seed=7), "count": 2}

    def hold_first_until_second_waits(sender, created, **kwargs):
        if threading.current_thread().name != "first" or first_inside.is_set():
            return
        first_inside.set()
        _wait_for_a_backend_blocked_on_a_lock()  # the second, on the key's unique index

    def send(name: str) -> None:
        caller = Caller(Client(), world.member.token)  # a client of its own per thread
        try:
            answers[name] = post(caller, "tasks", body)
        finally:
            connections.close_all()

    post_save.connect(hold_first_until_second_waits, sender=Batch)
    try:
        first = threading.Thread(target=send, args=("first",), name="first")
        first.start()
        assert first_inside.wait(timeout=30)
        second = threading.Thread(target=send, args=("second",), name="second")
        second.start()
        first.join(timeout=60)
        second.join(timeout=60)
    finally:
        post_save.disconnect(hold_first_until_second_waits, sender=Batch)
    assert answers["first"].status_code == answers["second"].status_code == 201
    assert answers["second"].content == answers["first"].content
    assert Batch.objects.count() == 1
    assert Task.objects.count() == 2


BLOCKED = (
    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
    " AND datname = current_database() AND pid <> pg_backend_pid()"
)


def _wait_for_a_backend_blocked_on_a_lock(timeout: float = 20) -> None:
    """PostgreSQL says when a backend waits on a lock; ask it until one does."""
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            # This runs inside the first request's transaction, which would see one
            # snapshot of the activity all along.
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(BLOCKED)
            if cursor.fetchone()[0]:
                return
            cursor.execute("SELECT pg_sleep(0.01)")
    raise AssertionError("the duplicate never waited on the first request's key")
