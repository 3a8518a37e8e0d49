"""Batches as units in the API (issue 16): GET /batches/{id}, retry and run again of a
batch and of a task (`tasks.rerun`, as on the pages)."""

from __future__ import annotations

import pytest

from tasks.models import Batch, Status, Task
from tests.api.callers import error_of
from tests.factories import capable_state, make_server, make_task, trivial_graph

pytestmark = pytest.mark.django_db
MISSING = 10**9


@pytest.fixture
def batch(world):
    """Four tasks submitted over the API as one batch: they end completed, failed,
    canceled, and one runs (half way)."""
    response = world.member("POST", "tasks", {"graph": trivial_graph(), "count": 4})
    batch = Batch.objects.get(pk=response.json()["batch"])
    server = make_server()
    ends = (Status.COMPLETED, Status.FAILED, Status.CANCELED, Status.RUNNING)
    for task, status in zip(batch.tasks.order_by("pk"), ends, strict=True):
        Task.objects.filter(pk=task.pk).update(
            status=status, server=server, progress_fraction=0.5, error_message="boom"
        )
    return batch


def test_a_batch_answers_its_counts_progress_and_where_its_tasks_are(world, batch):
    response = world.viewer("GET", f"batches/{batch.pk}")

    assert response.status_code == 200
    body = response.json()
    assert body["counts"] == {
        "pending": 0,
        "dispatched": 0,
        "running": 1,
        "completed": 1,
        "failed": 1,
        "canceled": 1,
    }
    assert (body["total"], body["finished"], body["done"], body["state"]) == (
        4,
        3,
        False,
        "running",
    )
    assert body["progress"] == {"fraction": 0.875, "percent": 87}  # (3 + 0.5) / 4
    assert body["team"] == {"id": world.team.pk, "name": "Studio"}
    assert body["submitter"] == "max"
    listed = world.viewer("GET", body["tasks_url"]).json()
    assert listed["count"] == 4


def test_another_teams_batch_is_a_404_like_a_missing_one(world, batch):
    theirs = world.stranger("GET", f"batches/{batch.pk}")
    missing = world.stranger("GET", f"batches/{MISSING}")
    assert theirs.status_code == missing.status_code == 404
    assert error_of(theirs) == error_of(missing)
    assert world.anonymous("GET", f"batches/{batch.pk}").status_code == 401


def test_retrying_a_batch_puts_back_its_failed_and_canceled_tasks(world, batch):
    ended = batch.tasks.filter(status__in=(Status.FAILED, Status.CANCELED)).order_by("pk")
    ended = list(ended.values_list("pk", flat=True))

    response = world.member("POST", f"batches/{batch.pk}/retry")

    assert response.status_code == 200
    assert response.json()["retried"] == ended
    assert set(Task.objects.filter(pk__in=ended).values_list("status", flat=True)) == {"pending"}
    assert response.json()["batch"]["counts"]["pending"] == 2
    assert world.member("POST", f"batches/{batch.pk}/retry").json()["retried"] == []


def test_viewers_may_not_retry_or_run_a_batch_again(world, batch):
    for action in ("retry", "run-again"):
        response = world.viewer("POST", f"batches/{batch.pk}/{action}")
        assert response.status_code == 403
        assert error_of(response)["type"] == "permission_denied"
    assert Batch.objects.count() == 1


def test_running_a_batch_again_makes_a_new_batch_of_the_same_graphs(world, batch):
    response = world.member("POST", f"batches/{batch.pk}/run-again")

    assert response.status_code == 201
    body = response.json()
    assert body["batch"] not in (None, batch.pk)
    graphs = sorted(map(str, batch.tasks.values_list("graph", flat=True)))
    again = Task.objects.filter(batch_id=body["batch"])
    assert sorted(map(str, again.values_list("graph", flat=True))) == graphs
    assert {t["status"] for t in body["tasks"]} == {"pending"}


def test_run_again_with_an_idempotency_key_runs_once(world, batch):
    key = {"HTTP_IDEMPOTENCY_KEY": "again-1"}
    first = world.member.client.post(
        f"/api/v1/batches/{batch.pk}/run-again",
        data="{}",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {world.member.token}",
        **key,
    )
    second = world.member.client.post(
        f"/api/v1/batches/{batch.pk}/run-again",
        data="{}",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {world.member.token}",
        **key,
    )
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert Batch.objects.count() == 2


def test_a_task_is_retried_in_place_and_only_when_it_failed_or_was_canceled(world):
    failed = make_task(world.team, status=Status.FAILED, error_message="boom")
    completed = make_task(world.team, status=Status.COMPLETED)

    response = world.member("POST", f"tasks/{failed.pk}/retry")
    assert response.status_code == 200
    assert (response.json()["id"], response.json()["status"]) == (failed.pk, "pending")
    assert response.json()["error"] is None

    refused = world.member("POST", f"tasks/{completed.pk}/retry")
    assert refused.status_code == 409
    assert "only failed or canceled" in error_of(refused)["message"]


def test_a_task_runs_again_with_its_graph_or_with_new_seeds(world):
    task = make_task(world.team, status=Status.COMPLETED, params={"3.seed": 5})
    task.graph["3"]["inputs"]["seed"] = 5
    task.save(update_fields=["graph"])

    same = world.member("POST", f"tasks/{task.pk}/run-again").json()["tasks"][0]
    fresh = world.member("POST", f"tasks/{task.pk}/run-again", {"new_seeds": True}).json()
    (fresh,) = fresh["tasks"]

    assert same["params"] == {"3.seed": 5}
    assert Task.objects.get(pk=same["id"]).graph == task.graph
    assert (
        Task.objects.get(pk=fresh["id"]).graph["3"]["inputs"]["seed"] == fresh["params"]["3.seed"]
    )


def test_work_no_server_can_run_any_more_is_refused_as_unrunnable(world):
    task = make_task(world.team, status=Status.FAILED)
    make_server(state=capable_state(model_files={"checkpoints": []}))  # lost the checkpoint
    for action in ("retry", "run-again"):
        response = world.member("POST", f"tasks/{task.pk}/{action}")
        assert response.status_code == 400
        assert error_of(response)["type"] == "unrunnable"
    assert Task.objects.get().status == Status.FAILED
