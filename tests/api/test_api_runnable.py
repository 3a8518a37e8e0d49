"""Over the API: work no server can run is a 400 naming what is missing and the
servers checked, and a pending task says why it waits (#10)."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from servers.models import ServerState
from tasks import dispatch, queue
from tasks.models import Status, Task
from tests.api.callers import error_of
from tests.factories import make_task, make_workflow, shared_workflow
from tests.simulator_thread import register_known

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("own_dispatch_keys")]


def unknown_node() -> dict[str, Any]:
    graph = copy.deepcopy(shared_workflow("empty_save"))
    graph["3"] = {"class_type": "NoSuchNode", "inputs": {"image": ["1", 0]}}
    graph["2"]["inputs"]["images"] = ["3", 0]
    return graph


def test_a_graph_using_a_node_no_server_has_is_a_400_naming_it_and_the_servers(world, sim_thread):
    sims = sim_thread.start(2)
    names = sorted(register_known(sim_thread, sim).name for sim in sims)
    response = world.member("POST", "tasks", {"graph": unknown_node()})
    assert response.status_code == 400
    error = error_of(response)
    assert error["type"] == "unrunnable"
    assert "missing nodes: NoSuchNode" in error["message"]
    assert all(name in error["message"] for name in names)
    assert sorted(error["details"]["checked"]) == names
    assert {s["can_run"] for s in error["details"]["servers"]} == {False}
    assert not Task.objects.exists()


def test_a_workflow_with_a_missing_input_is_a_400_with_each_servers_node_errors(world, sim_thread):
    (sim,) = sim_thread.start(1)
    register_known(sim_thread, sim)
    graph = shared_workflow("empty_save")
    del graph["2"]["inputs"]["images"]
    workflow = make_workflow(world.team, graph=graph)
    response = world.member("POST", "tasks", {"workflow": workflow.pk, "count": 3})
    assert response.status_code == 400
    error = error_of(response)
    assert "Required input is missing" in error["message"]
    (server,) = error["details"]["servers"]
    assert server["node_errors"]["2"][0]["type"] == "required_input_missing"
    assert not Task.objects.exists()


def test_a_graph_is_accepted_while_no_servers_catalogue_is_known(world):
    response = world.member("POST", "tasks", {"graph": unknown_node()})
    assert response.status_code == 201
    (task,) = response.json()["tasks"]
    assert task["status"] == "pending"


def _task(world, pk: int) -> dict[str, Any]:
    return world.member("GET", f"tasks/{pk}").json()


def _listed(world, pk: int) -> dict[str, Any]:
    items = world.member("GET", "tasks", status="pending").json()["items"]
    return next(item for item in items if item["id"] == pk)


def test_a_task_waiting_for_an_unhealthy_fleet_says_so_in_detail_and_list(world, sim_thread):
    (sim,) = sim_thread.start(1)
    server = register_known(sim_thread, sim)
    ServerState.objects.filter(server=server).update(health="unhealthy")
    task = make_task(world.team)
    dispatch.dispatch_pending()
    reason = _task(world, task.pk)["waiting_reason"]
    assert reason is not None
    assert server.name in reason
    assert "unhealthy" in reason
    assert _listed(world, task.pk)["waiting_reason"] == reason


def test_a_task_waiting_for_a_full_fleet_says_so(world, sim_thread):
    (sim,) = sim_thread.start(1)
    server = register_known(sim_thread, sim, max_inflight=1)
    ServerState.objects.filter(server=server).update(inflight=1)
    task = make_task(world.team)
    dispatch.dispatch_pending()
    assert _task(world, task.pk)["waiting_reason"] == "every enabled server is full"


def test_a_paused_queue_and_a_retry_backing_off_are_reasons_to_wait(world):
    backing_off = make_task(world.team, not_before=timezone.now() + timedelta(minutes=5))
    assert "retrying after a failed attempt" in _task(world, backing_off.pk)["waiting_reason"]
    queue.pause(world.team, reason="maintenance")
    for pk in (backing_off.pk, make_task(world.team).pk):
        assert _task(world, pk)["waiting_reason"] == "Studio's queue is paused: maintenance"


def test_the_task_page_says_why_a_task_waits_in_the_apis_words(world, client):
    queue.pause(world.team, reason="maintenance")
    task = make_task(world.team)
    client.force_login(world.users["member"])
    page = client.get(f"/tasks/{task.pk}/").content.decode()
    reason = _task(world, task.pk)["waiting_reason"]
    assert f"<dt>Waiting</dt><dd>{reason}</dd>" in page.replace("&#x27;", "'")


def test_a_task_on_a_server_has_no_waiting_reason(world):
    queue.pause(None)
    task = make_task(world.team, status=Status.RUNNING)
    assert _task(world, task.pk)["waiting_reason"] is None
