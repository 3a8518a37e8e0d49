"""Over the API: work no server can run is a 400 naming what is missing and the
servers checked (#10)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tasks.models import Task
from tests.api.conftest import error_of
from tests.tasks.queue_factories import (  # noqa: F401 - the *_fixture names are fixtures
    own_dispatch_keys_fixture,
    register_known,
    sim_thread_fixture,
)
from tests.tasks.workflow_factories import make_workflow, shared_workflow

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("own_dispatch_keys")]


@pytest.fixture(autouse=True)
def fast_passwords(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


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
