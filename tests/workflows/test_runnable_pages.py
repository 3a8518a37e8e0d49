"""The workflow and template pages say which servers can run a graph, warn when
one is saved that none can, and refuse to queue it (#10, items 2 and 3)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from django.contrib.messages import get_messages

from tasks.models import Task
from tests.factories import (
    empty_save_template,
    make_workflow,
    shared_workflow,
)
from tests.simulator_thread import register_known
from workflows.models import Workflow

# `client` is signed in as `member`, of `team`.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("own_dispatch_keys", "member_client")]


def missing_input() -> dict[str, Any]:
    """empty_save with SaveImage's required `images` left out."""
    graph = copy.deepcopy(shared_workflow("empty_save"))
    del graph["2"]["inputs"]["images"]
    return graph


def unknown_node() -> dict[str, Any]:
    graph = copy.deepcopy(shared_workflow("empty_save"))
    graph["3"] = {"class_type": "NoSuchNode", "inputs": {"image": ["1", 0]}}
    graph["2"]["inputs"]["images"] = ["3", 0]
    return graph


def test_detail_page_says_a_server_cannot_run_a_graph_missing_a_required_input(
    client, team, sim_thread
):
    sims = sim_thread.start(2)
    servers = [register_known(sim_thread, sim) for sim in sims]
    workflow = make_workflow(team, graph=missing_input())
    html = client.get(f"/workflows/{workflow.pk}/").content.decode()
    assert "can run</span>" not in html.replace("cannot run</span>", "")
    assert html.count("cannot run</span>") == 2
    assert "Required input is missing: images" in html
    assert all(server.name in html for server in servers)


def test_detail_page_says_which_servers_can_run_a_valid_graph(client, team, sim_thread):
    (sim,) = sim_thread.start(1)
    register_known(sim_thread, sim)
    workflow = make_workflow(team, graph=shared_workflow("empty_save"))
    html = client.get(f"/workflows/{workflow.pk}/").content.decode()
    assert "can run</span>" in html
    assert "cannot run</span>" not in html


def test_running_a_workflow_no_server_can_run_is_refused_on_the_form(client, team, sim_thread):
    (sim,) = sim_thread.start(1)
    server = register_known(sim_thread, sim)
    workflow = make_workflow(team, graph=unknown_node())
    response = client.post(f"/workflows/{workflow.pk}/run/", {"priority": 1, "count": 1})
    assert response.status_code == 400
    html = response.content.decode()
    assert "Not queued: No enabled server can run this graph" in html
    assert "missing nodes: NoSuchNode" in html
    assert server.name in html
    assert not Task.objects.exists()


def test_submitting_a_template_value_every_server_rejects_is_refused_on_the_form(
    client, team, sim_thread
):
    (sim,) = sim_thread.start(1)
    register_known(sim_thread, sim)
    template = empty_save_template(team)
    # The template allows 0, EmptyImage on the server does not (min 1).
    template.parameters.filter(name="width").update(minimum=0)
    form = {
        "p_color": "0",
        "p_prefix": "x",
        "priority": 1,
        "mode": "count",
        "count": 1,
        "action": "submit",
    }
    response = client.post(f"/templates/{template.pk}/", form | {"p_width": "0"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "Not queued: No enabled server can run this graph" in html
    assert "Value 0 smaller than min of 1" in html
    assert 'value="0"' in html  # the form keeps what was entered
    assert not Task.objects.exists()
    accepted = client.post(f"/templates/{template.pk}/", form | {"p_width": "64"})
    assert accepted.status_code == 302
    assert Task.objects.count() == 1


def test_saving_a_workflow_no_server_can_run_keeps_it_and_warns(client, team, sim_thread):
    (sim,) = sim_thread.start(1)
    server = register_known(sim_thread, sim)
    response = client.post(
        "/workflows/new/",
        {"team": team.pk, "name": "Broken", "graph_text": json.dumps(missing_input())},
    )
    assert response.status_code == 302
    workflow = Workflow.objects.get(name="Broken")
    warnings = [str(m) for m in get_messages(response.wsgi_request) if m.level_tag == "warning"]
    assert len(warnings) == 1
    assert "cannot run" in warnings[0]
    assert server.name in warnings[0]
    assert "Required input is missing: images" in warnings[0]
    assert workflow.current_version is not None


def test_saving_a_workflow_a_server_can_run_gives_no_warning(client, team, sim_thread):
    (sim,) = sim_thread.start(1)
    register_known(sim_thread, sim)
    response = client.post(
        "/workflows/new/",
        {"team": team.pk, "name": "Fine", "graph_text": json.dumps(shared_workflow("empty_save"))},
    )
    assert response.status_code == 302
    assert not [m for m in get_messages(response.wsgi_request) if m.level_tag == "warning"]
