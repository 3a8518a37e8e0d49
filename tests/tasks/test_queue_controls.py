from __future__ import annotations

import re

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from tasks import queue, queue_panel
from tasks.models import QueuePause, Status, Task
from teams.models import Role
from tests.factories import make_team, make_user
from tests.live_socket import connected_as

pytestmark = pytest.mark.django_db

GRAPH = {"1": {"class_type": "EmptyImage", "inputs": {}}}


def test_staff_pause_and_resume_the_whole_queue(client):
    client.force_login(make_user(staff=True))
    client.post("/queue/pause")
    assert QueuePause.objects.filter(team=None).exists()
    assert "paused for everyone" in client.get("/").content.decode()
    client.post("/queue/resume")
    assert not QueuePause.objects.exists()


def test_members_cannot_pause_everyone_nor_their_team(client):
    team = make_team()
    client.force_login(make_user(team=team, role=Role.MEMBER))
    assert client.post("/queue/pause").status_code == 403
    assert client.post("/queue/pause", {"team": team.pk}).status_code == 403
    assert not QueuePause.objects.exists()


def test_team_admin_pauses_only_their_team_and_other_teams_are_404(client):
    ours, theirs = make_team("Ours"), make_team("Theirs")
    client.force_login(make_user(team=ours, role=Role.ADMIN))
    client.post("/queue/pause", {"team": ours.pk})
    assert QueuePause.objects.get().team == ours
    assert client.post("/queue/pause", {"team": theirs.pk}).status_code == 404
    assert client.post("/queue/pause", {"team": "x"}).status_code == 404


def test_clear_cancels_the_teams_pending_tasks_only(client):
    ours, theirs = make_team("Ours"), make_team("Theirs")
    mine = Task.objects.create(team=ours, graph=GRAPH)
    other = Task.objects.create(team=theirs, graph=GRAPH)
    client.force_login(make_user(team=ours, role=Role.ADMIN))
    client.post("/queue/clear", {"team": ours.pk})
    mine.refresh_from_db()
    other.refresh_from_db()
    assert mine.status == Status.CANCELED
    assert other.status == Status.PENDING


def test_panel_counts_only_the_users_teams(client):
    ours, theirs = make_team("Ours"), make_team("Theirs")
    Task.objects.create(team=ours, graph=GRAPH)
    for _ in range(3):
        Task.objects.create(team=theirs, graph=GRAPH)
    client.force_login(make_user(team=ours))
    html = client.get("/queue/panel").content.decode()
    assert '<strong>1</strong><span class="muted small">Pending</span>' in html


async def _dashboard_socket() -> tuple[WebsocketCommunicator, list[dict]]:
    """A dashboard's socket subscribed to the queue topic, and the snapshot it got."""
    communicator = await connected_as(await sync_to_async(make_user)())
    await communicator.send_json_to({"action": "subscribe", "topic": "queue"})
    assert (await communicator.receive_json_from(timeout=5))["type"] == "subscribed"
    return communicator, [await communicator.receive_json_from(timeout=5) for _ in range(2)]


@pytest.mark.django_db(transaction=True)
async def test_state_changes_send_dashboards_a_refresh_hint():
    communicator, snapshot = await _dashboard_socket()
    assert [m["target"] for m in snapshot] == [queue_panel.TARGET, "fleet-panel"]

    await sync_to_async(queue_panel.refresh_browsers)()
    hint = await communicator.receive_json_from(timeout=5)
    assert hint == {
        "type": "fragment.refresh",
        "topic": "queue",
        "key": None,
        "target": "queue-panel",
        "url": "/queue/panel",
    }
    await communicator.disconnect()


def _control_row(html: str, label: str) -> str:
    row = re.search(rf'<div class="control-row" data-queue="{label}"(.*?)</div>', html, re.S)
    assert row, f"no queue control for {label}"
    return row.group(0)


def test_pause_and_resume_buttons_show_the_queues_current_state(client):
    ours = make_team("Ours")
    client.force_login(make_user(team=ours, role=Role.ADMIN))
    running = _control_row(client.get("/").content.decode(), "Ours")
    assert 'data-state="running"' in running
    assert ">Pause</button>" in running
    assert "Resume" not in running

    client.post("/queue/pause", {"team": ours.pk})
    panel = client.get("/queue/panel").content.decode()
    assert '<span class="badge degraded">paused for Ours</span>' in panel
    paused = _control_row(panel, "Ours")
    assert 'data-state="paused"' in paused
    assert ">Resume</button>" in paused
    assert "Pause<" not in paused


def test_members_get_no_queue_buttons_and_staff_get_everyones(client):
    team = make_team("Ours")
    client.force_login(make_user(team=team, role=Role.MEMBER))
    assert 'class="control-row"' not in client.get("/").content.decode()
    client.force_login(make_user(staff=True))
    html = client.get("/").content.decode()
    assert 'data-state="running"' in _control_row(html, "Everyone")
    assert 'id="queue-pause"' in html  # the form its buttons submit, with the page's token


@pytest.mark.django_db(transaction=True)
async def test_pausing_sends_dashboards_a_refresh_hint():
    communicator, _ = await _dashboard_socket()
    await sync_to_async(queue.pause)()
    assert (await communicator.receive_json_from(timeout=5))["type"] == "fragment.refresh"
    await sync_to_async(queue.resume)()
    assert (await communicator.receive_json_from(timeout=5))["type"] == "fragment.refresh"
    await communicator.disconnect()
