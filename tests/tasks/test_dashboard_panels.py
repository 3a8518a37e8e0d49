"""The dashboard's fleet and queue panels agree on what is in flight (issue #10).

Both count active tasks (dispatched or running) from one read: the page renders
them together, and a refresh after a state change brings both back together.
"""

from __future__ import annotations

import re

import pytest

from servers.models import ServerState
from tasks.models import Status
from tasks.transitions import free_slot, transition
from tests.factories import make_server, make_task, make_team, make_user, shared_workflow

pytestmark = pytest.mark.django_db


def fleet_inflight(html: str, server: str) -> tuple[int, int]:
    """ "N of M slots in use" of one server in the fleet panel: (tasks, max)."""
    row = re.search(rf'data-server="{server}">(.*?)</li>', html, re.S)
    assert row, f"{server} is not in the fleet panel"
    shown = re.search(r"(\d+) of (\d+) slots? in use", row.group(1))
    assert shown, f"no in-flight count for {server}: {row.group(1)}"
    return int(shown.group(1)), int(shown.group(2))


def queue_count(html: str, label: str) -> int:
    match = re.search(rf'<strong>(\d+)</strong><span class="muted small">{label}</span>', html)
    assert match, f"no {label} count in the queue panel"
    return int(match.group(1))


def on_server(html: str) -> int:
    return queue_count(html, "Dispatched") + queue_count(html, "Running")


def test_fleet_in_flight_is_the_tasks_the_queue_panel_counts(client):
    team = make_team()
    server = make_server(name="gpu-1", max_inflight=2)
    client.force_login(make_user(team=team, staff=True))
    # A slot held without a task on the server (claimed a moment before the task,
    # or left by a crash): the old fleet panel said 1/2 beside "0 dispatched, 0 running".
    ServerState.objects.filter(server=server).update(inflight=1)
    html = client.get("/").content.decode()
    assert fleet_inflight(html, "gpu-1") == (0, 2)
    assert on_server(html) == 0

    make_task(
        team, dispatched_to=server, status=Status.DISPATCHED, graph=shared_workflow("empty_save")
    )
    make_task(
        team, dispatched_to=server, status=Status.RUNNING, graph=shared_workflow("empty_save")
    )
    make_task(
        team, dispatched_to=server, status=Status.COMPLETED, graph=shared_workflow("empty_save")
    )
    html = client.get("/").content.decode()
    assert fleet_inflight(html, "gpu-1") == (2, 2)
    assert (queue_count(html, "Dispatched"), queue_count(html, "Running")) == (1, 1)


def fleet_collecting(html: str, server: str) -> int:
    row = re.search(rf'data-server="{server}">(.*?)</li>', html, re.S)
    shown = re.search(r"<span data-collecting>(\d+)</span> collecting outputs", row.group(1))
    return int(shown.group(1)) if shown else 0


def test_a_task_whose_outputs_are_collected_shows_as_collecting_not_in_a_slot(client):
    team = make_team()
    server = make_server(name="gpu-1", max_inflight=1)
    client.force_login(make_user(team=team, staff=True))
    task = make_task(
        team, dispatched_to=server, status=Status.RUNNING, graph=shared_workflow("empty_save")
    )
    assert free_slot(task.pk, task.prompt_id)
    make_task(
        team, dispatched_to=server, status=Status.RUNNING, graph=shared_workflow("empty_save")
    )

    html = client.get("/").content.decode()
    # The freed slot runs the next prompt while the first one's outputs are fetched.
    assert fleet_inflight(html, "gpu-1") == (1, 1)
    assert fleet_collecting(html, "gpu-1") == 1
    assert on_server(html) == 2
    servers_page = client.get(f"/servers/{server.pk}/").content.decode()
    assert "1 of 1 tasks, and 1 whose outputs are being collected" in servers_page


def test_a_refresh_brings_both_panels_from_one_read(client):
    team = make_team()
    server = make_server(name="gpu-1", max_inflight=2)
    client.force_login(make_user(team=team, staff=True))
    task = make_task(
        team, dispatched_to=server, status=Status.RUNNING, graph=shared_workflow("empty_save")
    )

    panels = client.get("/queue/panel").content.decode()
    assert 'id="queue-panel"' in panels
    assert 'id="fleet-panel"' in panels
    assert fleet_inflight(panels, "gpu-1") == (1, 2)
    assert on_server(panels) == 1

    assert transition(task.pk, Status.RUNNING, Status.COMPLETED, message="done")
    panels = client.get("/queue/panel").content.decode()
    assert fleet_inflight(panels, "gpu-1") == (0, 2)
    assert on_server(panels) == 0


def test_a_member_is_told_the_queue_counts_their_teams_and_the_fleet_everyones(client):
    ours, theirs = make_team("Ours"), make_team("Theirs")
    server = make_server(name="gpu-1", max_inflight=2)
    client.force_login(make_user(team=ours))
    make_task(
        theirs, dispatched_to=server, status=Status.RUNNING, graph=shared_workflow("empty_save")
    )
    html = client.get("/").content.decode()
    assert fleet_inflight(html, "gpu-1") == (1, 2)
    assert on_server(html) == 0
    assert "Tasks of Ours; in flight on the fleet counts every team's." in html
