from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from comfyweb.consumers import LiveConsumer
from servers import status_panel
from servers.models import FailureKind, FailureRecord, Health, ServerState
from tests.factories import make_server, make_user


def busy(health: str = Health.HEALTHY) -> dict:
    """The state of a server running one prompt with three waiting, one slot ours."""
    return {"health": health, "queue_running": 1, "queue_pending": 3, "inflight": 1}


@pytest.mark.django_db
def test_servers_page_shows_each_server_with_health_and_load(client):
    make_server("gpu-1", state=busy())
    make_server("gpu-2", kind="simulated", state=busy(Health.UNHEALTHY))
    client.force_login(make_user())
    html = client.get("/servers/").content.decode()
    assert 'class="health-healthy"' in html
    assert 'class="health-unhealthy"' in html
    assert "Simulated (demo)" in html
    assert "1 running, 3 waiting" in html  # others' prompts on it
    assert 'id="server-test"' not in html  # only staff may test: no form to post
    assert '<body data-live="off">' in html  # ...and the staff-only cells stay hidden


@pytest.mark.django_db
def test_the_test_button_survives_a_live_push_of_the_rows_for_staff(client):
    """The rows are pushed rendered without a user; staff keep their Test buttons,
    which post the page's own form (with its CSRF token)."""
    server = make_server("gpu-1", state=busy())
    client.force_login(make_user(staff=True))
    page = client.get("/servers/").content.decode()
    assert '<body data-live="off" class="staff">' in page
    form = '<form id="server-test" method="post" hidden>'
    assert f'{form}<input type="hidden" name="csrfmiddlewaretoken"' in page
    pushed = status_panel.render_rows()
    button = f'form="server-test" formaction="/servers/{server.pk}/test"'
    assert button in pushed
    assert button in page


@pytest.mark.django_db
def test_server_detail_lists_failures_and_capabilities(client):
    server = make_server("gpu-1", state=busy())
    FailureRecord.objects.create(server=server, kind=FailureKind.HEALTH, reason="refused")
    ServerState.objects.filter(server=server).update(
        node_classes=["KSampler", "SaveImage"],
        model_files={"checkpoints": ["a.safetensors"], "loras": []},
        event_stats={"capabilities": {"hits": 9, "misses": 1, "hit_rate": 0.9}},
    )
    client.force_login(make_user())
    html = client.get(f"/servers/{server.pk}/").content.decode()
    assert "refused" in html
    assert "2 node classes" in html
    assert "a.safetensors" in html
    assert "loras" not in html  # empty folders are left out
    assert "9 hits, 1 misses (90% hit rate)" in html
    assert server.client_id in html


@pytest.mark.django_db
def test_dashboard_has_the_compact_fleet_panel(client):
    make_server("gpu-1", state=busy())
    make_server("gpu-2", state=busy(Health.UNHEALTHY))
    client.force_login(make_user())
    html = client.get("/").content.decode()
    assert 'id="fleet-panel"' in html
    assert "1 of 2 healthy" in html


@pytest.mark.django_db
def test_non_staff_cannot_run_the_test_action(client):
    server = make_server("gpu-1", state=busy())
    client.force_login(make_user())
    response = client.post(f"/servers/{server.pk}/test")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


@pytest.mark.django_db(transaction=True)
async def test_test_action_reports_latency_and_queue_of_a_live_server(client, comfyui_sim):
    server = await sync_to_async(make_server)("gpu-1", base_url=comfyui_sim.base_url, state=busy())
    await sync_to_async(client.force_login)(await sync_to_async(make_user)(staff=True))
    response = await sync_to_async(client.post)(f"/servers/{server.pk}/test", follow=True)
    text = [str(m) for m in response.context["messages"]]
    assert len(text) == 1
    assert text[0].startswith("gpu-1: healthy, ")
    assert "queue 0 running / 0 pending" in text[0]


@pytest.mark.django_db
def test_test_action_reports_an_unreachable_server(client):
    server = make_server(
        "gpu-1", base_url="http://127.0.0.1:9", state=busy()
    )  # discard port: nothing listens
    client.force_login(make_user(staff=True))
    response = client.post(f"/servers/{server.pk}/test", follow=True)
    [message] = [str(m) for m in response.context["messages"]]
    assert message.startswith("gpu-1: unreachable")


@pytest.mark.django_db(transaction=True)
async def test_publish_server_pushes_rows_and_has_dashboards_refetch_the_compact_panel():
    server = await sync_to_async(make_server)("gpu-1", state=busy())
    user = await sync_to_async(make_user)()
    communicator = WebsocketCommunicator(LiveConsumer.as_asgi(), "/ws/live/")
    communicator.scope["user"] = user
    assert (await communicator.connect())[0]
    await communicator.send_json_to({"action": "subscribe", "topic": "servers"})
    assert (await communicator.receive_json_from(timeout=5))["type"] == "subscribed"
    snapshot = await communicator.receive_json_from(timeout=5)
    assert snapshot["target"] == "server-rows"  # the compact panel comes with the queue's

    await sync_to_async(ServerState.objects.filter(server=server).update)(health=Health.UNHEALTHY)
    await sync_to_async(status_panel.publish_server)(server.pk)
    rows = await communicator.receive_json_from(timeout=5)
    hint = await communicator.receive_json_from(timeout=5)
    assert rows["target"] == "server-rows"
    assert 'class="health-unhealthy"' in rows["html"]
    # The dashboard's fleet panel is fetched with its queue panel, from one read.
    assert (hint["type"], hint["target"]) == ("fragment.refresh", "fleet-panel")
    client = Client()
    await sync_to_async(client.force_login)(user)
    panels = (await sync_to_async(client.get)(hint["url"])).content.decode()
    assert 'id="fleet-panel"' in panels
    assert "0 of 1 healthy" in panels
    await communicator.disconnect()


@pytest.mark.django_db
def test_admin_bulk_test_and_fleet_settings_singleton(client):
    server = make_server("gpu-1", base_url="http://127.0.0.1:9", state=busy())
    client.force_login(make_user(superuser=True))
    response = client.post(
        "/admin/servers/server/",
        {"action": "test_servers", "_selected_action": [server.pk]},
        follow=True,
    )
    assert any("gpu-1: ServerUnavailable" in str(m) for m in response.context["messages"])
    settings_page = client.get("/admin/servers/fleetsettings/")
    assert settings_page.status_code == 302
    assert settings_page["Location"] == "/admin/servers/fleetsettings/1/change/"


@pytest.mark.django_db(transaction=True)
async def test_staff_can_take_a_simulated_server_down_for_the_demo(client, comfyui_sim):
    server = await sync_to_async(make_server)(
        "gpu-1", base_url=comfyui_sim.base_url, kind="simulated", state=busy()
    )
    await sync_to_async(client.force_login)(await sync_to_async(make_user)(staff=True))
    response = await sync_to_async(client.post)(f"/servers/{server.pk}/outage", follow=True)
    [message] = [str(m) for m in response.context["messages"]]
    assert message == "gpu-1 is down for 30 s; watch it fail over and return."


@pytest.mark.django_db
def test_only_simulated_servers_offer_an_outage(client):
    server = make_server("gpu-1", kind="static", state=busy())
    client.force_login(make_user(staff=True))
    assert client.post(f"/servers/{server.pk}/outage").status_code == 404
    assert "Simulate outage" not in client.get(f"/servers/{server.pk}/").content.decode()
