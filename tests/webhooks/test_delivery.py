"""Signed deliveries to a real receiver on loopback: signatures, retries with one
webhook-id, redirects not followed, private addresses refused, auto-disable."""

from __future__ import annotations

import pytest

from tasks.models import Batch, Status
from tasks.transitions import transition
from tests.factories import make_task
from tests.webhooks.receiver import verify
from webhooks import endpoints, jobs
from webhooks.events import on_task_transitioned
from webhooks.models import Delivery, DeliveryState, Endpoint

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("sync_jobs")]


def finish(task, status=Status.COMPLETED) -> None:
    assert transition(task.pk, Status.RUNNING, status, message="done")


def running_task(team, **fields):
    return make_task(team, status=Status.RUNNING, **fields)


@pytest.fixture
def endpoint(studio, receiver, allow_private) -> Endpoint:
    team, admin = studio
    return endpoints.create_endpoint(
        team, admin, url=receiver.url(), events=["task.completed", "task.failed", "batch.completed"]
    )


def test_a_completed_task_is_delivered_signed_to_the_teams_endpoint(studio, endpoint, receiver):
    task = running_task(studio[0])
    finish(task)
    [got] = receiver.wait_for(1)
    assert verify(endpoint.secret, got.headers, got.body)
    assert not verify(endpoint.secret[:-4] + "AAA=", got.headers, got.body)
    assert got.payload["type"] == "task.completed"
    assert got.payload["data"]["id"] == task.pk
    assert got.payload["data"]["status"] == "completed"
    assert got.webhook_id.startswith("msg_")
    found = Delivery.objects.get()
    assert found.state == DeliveryState.SUCCEEDED
    [attempt] = found.attempt_log.all()
    assert attempt.status_code == 200
    assert attempt.latency_ms is not None
    assert attempt.response_excerpt == "answer 200"


def test_an_event_not_subscribed_to_is_not_delivered(studio, endpoint, receiver):
    finish(running_task(studio[0]), Status.CANCELED)
    assert not Delivery.objects.exists()
    assert receiver.received == []


def test_a_failed_delivery_is_retried_with_the_same_webhook_id(
    studio, endpoint, receiver, retries_due_at_once
):
    receiver.script = [500]
    finish(running_task(studio[0]), Status.FAILED)
    receiver.wait_for(1)
    assert Delivery.objects.get().state == DeliveryState.PENDING
    assert jobs.sweep() == 1  # the schedule's sweep queues what is due
    first, second = receiver.wait_for(2)
    assert first.webhook_id == second.webhook_id
    assert first.body == second.body
    assert all(verify(endpoint.secret, r.headers, r.body) for r in (first, second))
    found = Delivery.objects.get()
    assert found.state == DeliveryState.SUCCEEDED
    assert found.attempts == 2
    assert [a.status_code for a in found.attempt_log.order_by("at")] == [500, 200]
    assert Endpoint.objects.get().consecutive_failures == 0


def test_a_delivery_is_claimed_once_even_if_queued_twice(studio, endpoint, receiver, settings):
    settings.COMFYWEB_WEBHOOKS_ALLOW_PRIVATE = False  # the first try is refused: pending
    finish(running_task(studio[0]))
    found = Delivery.objects.get()
    assert found.attempts == 1
    assert found.state == DeliveryState.PENDING
    assert jobs.deliver(found.pk) == "not due"  # the retry is not due yet


def test_redirects_are_not_followed(studio, endpoint, receiver):
    receiver.script = [("redirect", "/elsewhere")]
    finish(running_task(studio[0]))
    [got] = receiver.wait_for(1)
    assert got.path == "/hook"
    attempt = Delivery.objects.get().attempt_log.get()
    assert attempt.status_code == 302
    assert "redirects are not followed" in attempt.error
    assert [r.path for r in receiver.received] == ["/hook"]


def test_a_private_address_is_refused_unless_allowed(studio, endpoint, receiver, settings):
    settings.COMFYWEB_WEBHOOKS_ALLOW_PRIVATE = False
    finish(running_task(studio[0]))
    attempt = Delivery.objects.get().attempt_log.get()
    assert attempt.status_code is None
    assert attempt.error.startswith("refused: 127.0.0.1")
    assert receiver.received == []


def test_an_endpoint_is_disabled_after_repeated_failures(
    studio, endpoint, receiver, retries_due_at_once, settings, client
):
    settings.COMFYWEB_WEBHOOKS_DISABLE_AFTER = 3
    receiver.script = [500] * 10
    finish(running_task(studio[0]))
    jobs.sweep()
    jobs.sweep()
    receiver.wait_for(3)
    endpoint.refresh_from_db()
    assert not endpoint.enabled
    assert endpoint.disabled_reason == "Disabled after 3 failed deliveries in a row"
    assert Delivery.objects.get().state == DeliveryState.FAILED
    assert jobs.sweep() == 0
    finish(running_task(studio[0]))  # a disabled endpoint is not written to
    assert Delivery.objects.count() == 1
    assert len(receiver.received) == 3
    client.force_login(studio[1])
    page = client.get(f"/webhooks/{endpoint.pk}/").content.decode()
    assert "This endpoint is disabled: Disabled after 3 failed deliveries in a row" in page


def test_a_delivery_is_given_up_after_the_retry_window(
    studio, endpoint, receiver, retries_due_at_once, settings
):
    settings.COMFYWEB_WEBHOOKS_RETRY_HOURS = 0
    receiver.script = [503]
    finish(running_task(studio[0]))
    receiver.wait_for(1)
    found = Delivery.objects.get()
    assert found.state == DeliveryState.FAILED
    assert found.last_error == "HTTP 503"


def test_the_same_event_announced_twice_is_one_delivery(studio, endpoint, receiver):
    task = running_task(studio[0])
    finish(task)
    on_task_transitioned(None, task_id=task.pk, to_status=Status.COMPLETED)
    assert Delivery.objects.count() == 1
    assert len(receiver.wait_for(1)) == 1


def test_a_batch_that_ends_is_delivered_once(studio, endpoint, receiver):
    team = studio[0]
    batch = Batch.objects.create(team=team)
    first, second = running_task(team, batch=batch), running_task(team, batch=batch)
    finish(first)
    finish(second, Status.FAILED)
    received = receiver.wait_for(3)
    types = sorted(r.payload["type"] for r in received)
    assert types == ["batch.completed", "task.completed", "task.failed"]
    [ended] = [r.payload for r in received if r.payload["type"] == "batch.completed"]
    assert ended["data"]["id"] == batch.pk
    assert ended["data"]["state"] == "failed"


def test_a_redelivery_sends_the_same_webhook_id_again(studio, endpoint, receiver, client):
    finish(running_task(studio[0]))
    receiver.wait_for(1)
    found = Delivery.objects.get()
    client.force_login(studio[1])
    response = client.post(f"/webhooks/deliveries/{found.pk}/redeliver")
    assert response.status_code == 302
    first, second = receiver.wait_for(2)
    assert first.webhook_id == second.webhook_id == found.message_id
    assert found.attempt_log.count() == 2


def test_a_delivery_the_broker_dropped_is_sent_by_the_sweep(
    studio, endpoint, receiver, monkeypatch
):
    import django_q.tasks

    queue = django_q.tasks.async_task

    def broker_away(*args, **kwargs):
        raise ConnectionError("Redis is away")

    monkeypatch.setattr(django_q.tasks, "async_task", broker_away)
    finish(running_task(studio[0]))  # the transition itself is unharmed
    found = Delivery.objects.get()
    assert found.state == DeliveryState.PENDING
    assert found.attempts == 0
    monkeypatch.setattr(django_q.tasks, "async_task", queue)
    assert jobs.sweep() == 1
    [got] = receiver.wait_for(1)
    assert got.webhook_id == found.message_id
