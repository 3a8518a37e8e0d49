"""Task list and detail pages, cancelling, and the authenticated output files (D3, A8)."""

from __future__ import annotations

import io

import pytest
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.utils import timezone
from PIL import Image

from comfyweb import live
from tasks import cancel, previews
from tasks.models import Batch, Output, Priority, Status, Task, TaskEvent
from tasks.submission import submit_runs
from tasks.views import batches as batch_views
from tasks.views import tasks as views
from teams.models import Role
from tests.factories import make_server, make_task, make_team, make_user, shared_workflow
from workflows.templating import Run

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media")]


@pytest.fixture
def cancels(monkeypatch):
    """Records cancel calls (the queue's side of cancelling is tested with the queue)."""
    calls = []

    def cancel_task(task_id, *, by):
        calls.append((task_id, by))
        return cancel.REQUESTED

    def cancel_batch(batch_id, *, by):
        ids = Task.objects.filter(batch_id=batch_id).exclude(status__in=Status.finished())
        return {
            cancel.REQUESTED: len(
                [cancel_task(pk, by=by) for pk in ids.values_list("pk", flat=True)]
            )
        }

    monkeypatch.setattr(views, "cancel_task", cancel_task)
    monkeypatch.setattr(batch_views, "cancel_batch", cancel_batch)
    return calls


def png_bytes(size=(8, 6)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "red").save(buffer, format="PNG")
    return buffer.getvalue()


def make_output(task) -> Output:
    output = Output(task=task, team=task.team, content_type="image/png", width=8, height=6)
    output.file.save("ignored", ContentFile(png_bytes()), save=False)
    output.thumbnail.save("ignored", ContentFile(b"RIFF....WEBP"), save=False)
    output.save()
    return output


def test_task_list_shows_only_the_users_teams_tasks_newest_first(client):
    team, other = make_team(), make_team()
    older = make_task(team, status=Status.PENDING, graph=shared_workflow("empty_save"))
    newer = make_task(
        team,
        dispatched_to=make_server(),
        status=Status.RUNNING,
        graph=shared_workflow("empty_save"),
    )
    hidden = make_task(other, status=Status.PENDING, graph=shared_workflow("empty_save"))
    client.force_login(make_user(team=team))
    html = client.get("/tasks/").content.decode()
    assert f'id="task-row-{newer.pk}"' in html
    assert f'id="task-row-{older.pk}"' in html
    assert f'id="task-row-{hidden.pk}"' not in html
    assert html.index(f"task-row-{newer.pk}") < html.index(f"task-row-{older.pk}")
    # Subscribed to its own team's row updates, not the other's.
    assert f'data-live-topic="team-tasks" data-live-key="{team.pk}"' in html
    assert f'data-live-key="{other.pk}"' not in html


def test_task_list_filters_by_status_priority_team_and_batch(client):
    team, second = make_team(), make_team()
    user = make_user(team=team)
    second.memberships.create(user=user, role=Role.VIEWER)
    batch = Batch.objects.create(team=team, description="sweep")
    failed = make_task(
        team, status=Status.FAILED, priority=Priority.URGENT, graph=shared_workflow("empty_save")
    )
    pending = make_task(
        team, status=Status.PENDING, batch=batch, graph=shared_workflow("empty_save")
    )
    elsewhere = make_task(second, status=Status.PENDING, graph=shared_workflow("empty_save"))
    client.force_login(user)

    def rows(query: str) -> set[int]:
        html = client.get(f"/tasks/?{query}").content.decode()
        return {t.pk for t in (failed, pending, elsewhere) if f'id="task-row-{t.pk}"' in html}

    assert rows("status=failed") == {failed.pk}
    assert rows(f"priority={Priority.URGENT}") == {failed.pk}
    assert rows(f"team={second.pk}") == {elsewhere.pk}
    assert rows(f"batch={batch.pk}") == {pending.pk}
    assert rows("status=bogus&priority=x") == {failed.pk, pending.pk, elsewhere.pk}


def test_task_list_pages_fifty_at_a_time(client):
    team = make_team()
    tasks = [
        make_task(team, status=Status.PENDING, graph=shared_workflow("empty_save"))
        for _ in range(53)
    ]
    client.force_login(make_user(team=team))
    first = client.get("/tasks/").content.decode()
    second = client.get("/tasks/?page=2").content.decode()
    assert first.count('<tr id="task-row-') == 50
    assert second.count('<tr id="task-row-') == 3
    assert f'id="task-row-{tasks[0].pk}"' in second  # the oldest is on the last page
    assert "Page 1 of 2" in first


def test_task_detail_shows_progress_timeline_nodes_and_the_failing_node(client):
    team = make_team()
    task = make_task(
        team,
        dispatched_to=make_server(name="gpu-a"),
        status=Status.FAILED,
        error_node="2",
        error_type="RuntimeError",
        error_message="boom went node 2",
        params={"seed": 42},
        graph=shared_workflow("empty_save"),
    )
    TaskEvent.objects.create(task=task, to_status=Status.FAILED, message="SaveImage raised")
    client.force_login(make_user(team=team))
    html = client.get(f"/tasks/{task.pk}/").content.decode()
    for part in ("status", "progress", "nodes", "timeline", "outputs", "preview"):
        assert f'id="task-{task.pk}-{part}"' in html
    assert 'class="node-error" aria-current="true"' in html
    assert "boom went node 2" in html
    assert "gpu-a" in html
    assert "SaveImage raised" in html
    assert f'data-live-topic="task" data-live-key="{task.pk}"' in html


def test_task_detail_counts_a_running_first_run_as_attempt_one(client):
    team = make_team()
    running = make_task(
        team,
        dispatched_to=make_server(),
        status=Status.RUNNING,
        graph=shared_workflow("empty_save"),
    )
    waiting = make_task(
        team,
        graph=shared_workflow("empty_save"),
        status=Status.DISPATCHED,
        dispatched_at=timezone.now(),
    )
    client.force_login(make_user(team=team))
    assert "<dd>1 of 3</dd>" in client.get(f"/tasks/{running.pk}/").content.decode()
    assert "<dd>none yet (up to 3)</dd>" in client.get(f"/tasks/{waiting.pk}/").content.decode()


def test_another_teams_task_is_a_404_everywhere(client, cancels):
    task = make_task(make_team(), dispatched_to=make_server(), graph=shared_workflow("empty_save"))
    output = make_output(task)
    client.force_login(make_user(team=make_team()))
    assert client.get(f"/tasks/{task.pk}/").status_code == 404
    assert client.post(f"/tasks/{task.pk}/cancel/").status_code == 404
    assert client.get(f"/tasks/{task.pk}/preview/").status_code == 404
    assert client.get(f"/outputs/{output.pk}/file/").status_code == 404
    assert client.get(f"/outputs/{output.pk}/thumbnail/").status_code == 404
    assert cancels == []


def test_output_file_is_served_with_its_content_type_to_the_team(client):
    team = make_team()
    output = make_output(
        make_task(
            team,
            dispatched_to=make_server(),
            status=Status.COMPLETED,
            graph=shared_workflow("empty_save"),
        )
    )
    client.force_login(make_user(team=team, role=Role.VIEWER))
    response = client.get(f"/outputs/{output.pk}/file/")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert b"".join(response.streaming_content) == png_bytes()
    thumb = client.get(f"/outputs/{output.pk}/thumbnail/")
    assert thumb["Content-Type"] == "image/webp"
    download = client.get(f"/outputs/{output.pk}/file/?download=1")
    assert "attachment" in download["Content-Disposition"]


def test_output_files_are_not_public_media(client):
    output = make_output(
        make_task(make_team(), dispatched_to=make_server(), graph=shared_workflow("empty_save"))
    )
    assert client.get(f"/outputs/{output.pk}/file/").status_code == 302  # to the login
    assert client.get(f"/media/{output.file.name}").status_code == 404


def test_members_cancel_tasks_and_batches_viewers_cannot(client, cancels):
    team = make_team()
    batch = Batch.objects.create(team=team)
    running = make_task(
        team,
        dispatched_to=make_server(),
        status=Status.RUNNING,
        batch=batch,
        graph=shared_workflow("empty_save"),
    )
    pending = make_task(
        team, status=Status.PENDING, batch=batch, graph=shared_workflow("empty_save")
    )
    make_task(team, status=Status.COMPLETED, batch=batch, graph=shared_workflow("empty_save"))

    client.force_login(make_user(team=team, role=Role.VIEWER))
    assert client.post(f"/tasks/{running.pk}/cancel/").status_code == 403
    assert client.post(f"/tasks/batches/{batch.pk}/cancel/").status_code == 403
    assert client.get(f"/tasks/{running.pk}/cancel/").status_code == 405

    member = make_user(team=team)
    client.force_login(member)
    response = client.post(f"/tasks/{running.pk}/cancel/")
    assert response.status_code == 302
    assert response["Location"] == f"/tasks/{running.pk}/"
    assert cancels == [(running.pk, member)]
    cancels.clear()
    client.post(f"/tasks/batches/{batch.pk}/cancel/")
    assert sorted(task_id for task_id, _ in cancels) == sorted([running.pk, pending.pk])


def test_live_preview_is_served_to_the_team_only_while_there_is_one(client):
    team = make_team()
    task = make_task(
        team,
        dispatched_to=make_server(),
        status=Status.RUNNING,
        graph=shared_workflow("empty_save"),
    )
    client.force_login(make_user(team=team))
    previews.discard(task.pk)
    assert client.get(f"/tasks/{task.pk}/preview/").status_code == 404
    previews.store(task.pk, "image/png", png_bytes())
    response = client.get(f"/tasks/{task.pk}/preview/")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert "?v=" in client.get(f"/tasks/{task.pk}/").content.decode()
    previews.discard(task.pk)


def test_new_tasks_are_announced_once_to_their_teams_lists(
    monkeypatch, django_capture_on_commit_callbacks
):
    published = []
    monkeypatch.setattr(
        live,
        "publish_fragment",
        lambda topic, target, html, key=None: published.append((topic, target, key)),
    )
    team = make_team()
    cache.delete(f"tasks:new-announced:{team.pk}")
    runs = [Run(shared_workflow("empty_save"), {}) for _ in range(5)]
    with django_capture_on_commit_callbacks(execute=True):
        submit_runs(team=team, submitter=make_user(team=team), runs=runs)
        submit_runs(team=team, submitter=make_user(team=team), runs=runs[:1])
    # Two submissions within the second: one notice.
    assert published == [("team-tasks", f"tasks-new-{team.pk}", str(team.pk))]
