"""The webhooks API and a submission's own `webhook`: secrets once, the error envelope
for bad input, deliveries listed and redelivered, per-submission deliveries signed."""

from __future__ import annotations

import pytest

from tasks.models import Status, Task
from tasks.transitions import transition
from tests.api.callers import error_of
from tests.factories import trivial_graph
from tests.webhooks.receiver import verify
from webhooks.models import Delivery, Endpoint, SubmissionSecret, SubmissionWebhook

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("sync_jobs")]


def test_the_secret_is_in_the_creation_answer_only(world, allow_private, receiver):
    created = world.admin("POST", "webhooks", {"url": receiver.url(), "events": ["task.failed"]})
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["secret"].startswith("whsec_")
    assert body["events"] == ["task.failed"]
    listed = world.viewer("GET", "webhooks").json()
    assert [e["id"] for e in listed] == [body["id"]]
    assert "secret" not in listed[0]
    assert Endpoint.objects.get().secret == body["secret"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "http://10.0.0.1/x"}, "url"),
        ({"url": "https://example.com/x", "events": ["task.started"]}, "events"),
        ({"url": "https://example.com/x", "events": []}, "events"),
    ],
)
def test_bad_input_is_a_400_with_the_envelope(world, body, field):
    response = world.admin("POST", "webhooks", body)
    assert response.status_code == 400
    error = error_of(response)
    assert error["type"] == "validation_error"
    assert {problem["field"].split("[")[0] for problem in error["details"]["fields"]} == {field}


def test_members_read_but_only_admins_change(world):
    made = world.admin("POST", "webhooks", {"url": "https://example.com/x"}).json()
    assert world.member("POST", "webhooks", {"url": "https://example.com/y"}).status_code == 403
    assert world.member("DELETE", f"webhooks/{made['id']}").status_code == 403
    assert world.stranger("DELETE", f"webhooks/{made['id']}").status_code == 404
    assert world.member("GET", f"webhooks/{made['id']}/deliveries").json() == []
    assert world.admin("DELETE", f"webhooks/{made['id']}").status_code == 204
    assert not Endpoint.objects.exists()


def test_a_submission_webhook_is_refused_without_the_teams_secret(world, allow_private):
    response = world.member(
        "POST", "tasks", {"graph": trivial_graph(), "webhook": "http://127.0.0.1:9/x"}
    )
    assert response.status_code == 400
    [problem] = error_of(response)["details"]["fields"]
    assert problem["field"] == "webhook"
    assert not Task.objects.exists()


def test_a_submission_webhook_is_told_of_each_task_and_the_batch(
    world, allow_private, receiver, client
):
    client.force_login(world.users["admin"])
    page = client.post("/webhooks/secret", {"team": world.team.pk})
    secret = SubmissionSecret.objects.get(team=world.team).secret
    assert secret in page.content.decode()  # shown once, on the answer to its creation
    submitted = world.member(
        "POST", "tasks", {"graph": trivial_graph(), "count": 2, "webhook": receiver.url("/mine")}
    )
    assert submitted.status_code == 201, submitted.content
    batch_id = submitted.json()["batch"]
    assert SubmissionWebhook.objects.filter(batch_id=batch_id).count() == 2
    for task in Task.objects.filter(batch_id=batch_id):
        Task.objects.filter(pk=task.pk).update(status=Status.RUNNING)
        transition(task.pk, Status.RUNNING, Status.COMPLETED, message="done")
    received = receiver.wait_for(3)
    assert all(verify(secret, r.headers, r.body) for r in received)
    assert {r.path for r in received} == {"/mine"}
    types = sorted(r.payload["type"] for r in received)
    assert types == ["batch.completed", "task.completed", "task.completed"]
    listed = world.admin("GET", "webhooks").json()
    assert listed == []  # a submission's URL is not an endpoint


def test_a_redeliver_through_the_api_keeps_the_webhook_id(world, allow_private, receiver):
    made = world.admin("POST", "webhooks", {"url": receiver.url()}).json()
    task = Task.objects.create(team=world.team, graph=trivial_graph(), status=Status.RUNNING)
    transition(task.pk, Status.RUNNING, Status.CANCELED, message="stop")
    receiver.wait_for(1)
    [logged] = world.viewer("GET", f"webhooks/{made['id']}/deliveries").json()
    assert logged["state"] == "succeeded"
    assert logged["attempt_log"][0]["status_code"] == 200
    path = f"webhooks/deliveries/{logged['id']}/redeliver"
    assert world.member("POST", path).status_code == 403
    again = world.admin("POST", path)
    assert again.status_code == 200
    first, second = receiver.wait_for(2)
    assert first.webhook_id == second.webhook_id == logged["webhook_id"]
    assert Delivery.objects.get().attempt_log.count() == 2
