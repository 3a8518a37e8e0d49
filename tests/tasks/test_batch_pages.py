"""Batches as units (issue 16): the batch page, its live parts, its actions, the task
list grouped by batch, and Retry / Run again on the task page."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.core.files.base import ContentFile

from tasks import batches
from tasks.models import Batch, Output, Status, Task
from tasks.transitions import transition
from teams.models import Role
from tests.factories import make_server, make_task, make_team, make_user
from tests.live_socket import connected_as

pytestmark = pytest.mark.django_db

FINISHED = (Status.COMPLETED, Status.FAILED, Status.CANCELED)


def batch_of(team, *statuses: str, **fields) -> Batch:
    batch = Batch.objects.create(team=team, description="five cats")
    server = make_server()
    for status in statuses:
        on_server = {"dispatched_to": server} if status in Status.active() else {}
        make_task(team, status=status, batch=batch, **on_server, **fields)
    return batch


def with_output(task: Task, media) -> Output:
    output = Output(task=task, team=task.team, content_type="image/png", width=8, height=6)
    output.file.save("x.png", ContentFile(b"png"), save=False)
    output.thumbnail.save("x.webp", ContentFile(b"webp"), save=False)
    output.save()
    return output


# -- the summary --------------------------------------------------------------------


def test_a_batch_is_done_when_every_task_ended_and_says_how_it_ended():
    team = make_team()
    running = batch_of(team, Status.COMPLETED, Status.RUNNING, Status.PENDING)
    Task.objects.filter(batch=running, status=Status.RUNNING).update(progress_fraction=0.5)
    ended = batch_of(team, Status.COMPLETED, Status.FAILED, Status.CANCELED)
    queued = batch_of(team, Status.PENDING, Status.PENDING)

    found = batches.summaries([running.pk, ended.pk, queued.pk])

    assert (found[running.pk].state, found[running.pk].percent) == (Status.RUNNING, 50)
    assert not found[running.pk].done
    assert (found[ended.pk].state, found[ended.pk].percent) == (Status.FAILED, 100)
    assert (found[ended.pk].finished, found[ended.pk].retryable) == (3, 2)
    assert (found[queued.pk].state, found[queued.pk].percent) == (Status.PENDING, 0)
    assert found[queued.pk].counts[Status.PENDING] == 2


# -- the page -----------------------------------------------------------------------


def test_the_batch_page_shows_progress_tasks_and_a_contact_sheet(client, media):
    team = make_team()
    batch = batch_of(team, Status.COMPLETED, Status.FAILED, Status.PENDING)
    done = batch.tasks.get(status=Status.COMPLETED)
    output = with_output(done, media)
    client.force_login(make_user(team=team))

    page = client.get(f"/tasks/batches/{batch.pk}/").content.decode()

    assert "2 of 3 finished" in page
    assert f'href="/gallery/{output.pk}/"' in page  # the contact sheet
    for task in batch.tasks.all():
        assert f'id="task-row-{task.pk}"' in page
    assert "Retry 1 failed or canceled" in page
    assert "Run the batch again" in page
    assert "Cancel the batch" in page
    assert 'data-live-topic="batch"' in page


def test_viewers_watch_a_batch_but_get_no_buttons_and_strangers_get_a_404(client):
    team = make_team()
    batch = batch_of(team, Status.FAILED, Status.PENDING)
    client.force_login(make_user(team=team, role=Role.VIEWER))
    page = client.get(f"/tasks/batches/{batch.pk}/").content.decode()
    assert "lets you watch this batch" in page
    assert "Run the batch again" not in page
    assert client.post(f"/tasks/batches/{batch.pk}/retry/").status_code == 403

    client.force_login(make_user(team=make_team(), role=Role.ADMIN))
    assert client.get(f"/tasks/batches/{batch.pk}/").status_code == 404


def test_the_live_parts_are_served_alone_for_the_socket_to_swap_in(client):
    team = make_team()
    batch = batch_of(team, Status.COMPLETED, Status.RUNNING)
    client.force_login(make_user(team=team))
    parts = client.get(f"/tasks/batches/{batch.pk}/?parts=live").content.decode()
    for part in ("summary", "actions", "contact-sheet"):
        assert f'id="batch-{batch.pk}-{part}"' in parts
    assert "<html" not in parts
    assert 'name="csrfmiddlewaretoken"' in parts  # its forms post


@pytest.mark.django_db(transaction=True)
async def test_a_task_of_the_batch_changing_state_tells_its_page_to_refetch():
    def world():
        team = make_team()
        batch = batch_of(team, Status.PENDING, Status.PENDING)
        return make_user(team=team), batch, batch.tasks.first()

    user, batch, task = await database_sync_to_async(world)()
    communicator = await connected_as(user)
    await communicator.send_json_to({"action": "subscribe", "topic": "batch", "key": str(batch.pk)})
    assert (await communicator.receive_json_from(timeout=5))["type"] == "subscribed"
    # The parts without forms: the actions need a request's CSRF token (the refetch has one).
    snapshot = [await communicator.receive_json_from(timeout=5) for _ in range(2)]
    assert {m["target"] for m in snapshot} == {
        f"batch-{batch.pk}-{part}" for part in ("summary", "contact-sheet")
    }

    moved = await database_sync_to_async(transition)(
        task.pk, Status.PENDING, Status.CANCELED, message="test"
    )
    assert moved
    hint = await communicator.receive_json_from(timeout=5)
    assert hint["type"] == "fragment.refresh"
    assert hint["target"] == f"batch-{batch.pk}-summary"
    assert hint["url"] == f"/tasks/batches/{batch.pk}/?parts=live"
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_strangers_cannot_subscribe_to_a_batch():
    def world():
        return make_user(team=make_team()), batch_of(make_team(), Status.PENDING)

    stranger, batch = await database_sync_to_async(world)()
    communicator = await connected_as(stranger)
    await communicator.send_json_to({"action": "subscribe", "topic": "batch", "key": str(batch.pk)})
    assert (await communicator.receive_json_from(timeout=5))["type"] == "error"
    await communicator.disconnect()


# -- actions ------------------------------------------------------------------------


def test_retrying_a_batch_puts_its_failed_and_canceled_tasks_back(client):
    team = make_team()
    batch = batch_of(team, Status.COMPLETED, Status.FAILED, Status.CANCELED)
    client.force_login(make_user(team=team))

    response = client.post(f"/tasks/batches/{batch.pk}/retry/", follow=True)

    assert response.redirect_chain[-1][0] == f"/tasks/batches/{batch.pk}/"
    assert "Retrying 2 tasks" in response.content.decode()
    statuses = sorted(batch.tasks.values_list("status", flat=True))
    assert statuses == [Status.COMPLETED, Status.PENDING, Status.PENDING]


def test_running_a_batch_again_opens_the_new_batch(client):
    team = make_team()
    batch = batch_of(team, Status.COMPLETED, Status.FAILED)
    client.force_login(make_user(team=team))

    response = client.post(f"/tasks/batches/{batch.pk}/run-again/")

    new = Batch.objects.exclude(pk=batch.pk).get()
    assert response["Location"] == f"/tasks/batches/{new.pk}/"
    assert sorted(new.tasks.values_list("graph", flat=True), key=str) == sorted(
        batch.tasks.values_list("graph", flat=True), key=str
    )
    assert set(new.tasks.values_list("status", flat=True)) == {Status.PENDING}


def test_cancelling_a_batch_from_its_page_cancels_its_pending_tasks(client):
    team = make_team()
    batch = batch_of(team, Status.PENDING, Status.PENDING, Status.COMPLETED)
    client.force_login(make_user(team=team))
    response = client.post(f"/tasks/batches/{batch.pk}/cancel/")
    assert response["Location"] == f"/tasks/batches/{batch.pk}/"
    assert sorted(batch.tasks.values_list("status", flat=True)) == sorted(
        [Status.CANCELED, Status.CANCELED, Status.COMPLETED]
    )


def test_a_failed_task_is_retried_from_its_page_and_a_finished_one_is_not(client):
    team = make_team()
    failed = make_task(team, status=Status.FAILED, error_message="boom")
    completed = make_task(team, status=Status.COMPLETED)
    client.force_login(make_user(team=team))

    page = client.get(f"/tasks/{failed.pk}/").content.decode()
    assert 'class="inline task-retry"' in page
    response = client.post(f"/tasks/{failed.pk}/retry/")
    assert response["Location"] == f"/tasks/{failed.pk}/"
    assert Task.objects.get(pk=failed.pk).status == Status.PENDING

    response = client.post(f"/tasks/{completed.pk}/retry/", follow=True)
    assert "only failed or canceled tasks are retried" in response.content.decode()
    assert Task.objects.get(pk=completed.pk).status == Status.COMPLETED


def test_run_again_from_a_task_page_opens_the_new_task(client):
    team = make_team()
    task = make_task(team, status=Status.COMPLETED)  # a raw graph: no template to refill
    client.force_login(make_user(team=team))

    response = client.post(f"/tasks/{task.pk}/run-again/", {"new_seeds": "1"})

    new = Task.objects.exclude(pk=task.pk).get()
    assert response["Location"] == f"/tasks/{new.pk}/"
    assert new.graph["3"]["inputs"]["seed"] == new.params["3.seed"]


# -- the task list ------------------------------------------------------------------


def test_the_task_list_groups_rows_under_their_batch(client):
    team = make_team()
    single = make_task(team)
    batch = batch_of(team, Status.COMPLETED, Status.PENDING)
    client.force_login(make_user(team=team))

    grouped = client.get("/tasks/?group=batch").content.decode()
    flat = client.get("/tasks/").content.decode()

    assert f'id="batch-group-{batch.pk}"' in grouped
    assert "1 of 2 finished" in grouped
    assert "Not in a batch" in grouped
    assert grouped.index(f'id="batch-group-{batch.pk}"') < grouped.index(
        f'id="task-row-{single.pk}"'
    )
    assert "batch-group" not in flat
