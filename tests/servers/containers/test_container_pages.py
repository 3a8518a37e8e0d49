"""The containers on the pages (issue #13): the Servers page's Containers section, a
pool's page, their live updates, and staff actions. No Docker: the rows are made here."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from django.utils import timezone

from comfyweb.signals import containers_changed
from servers.containers import panel, tending
from servers.containers.models import (
    Container,
    ContainerPool,
    ContainerState,
    GpuReservation,
    HostStatus,
    ScalingDecision,
)
from servers.models import Health, Server
from tests.factories import make_container, make_docker_host, make_pool, make_server, make_user
from tests.live_socket import connected_as

LOG_TAIL = "Traceback (most recent call last):\n  File main.py\nImportError: no module torch"


@pytest.fixture
def own_wake_keys(monkeypatch) -> None:
    """Wake-ups of our own: other test runs share the cache."""
    token = uuid.uuid4().hex
    monkeypatch.setattr(tending, "WAKE_KEY", f"test:{token}:tend-wake")
    monkeypatch.setattr(tending, "RERUN_KEY", f"test:{token}:tend-rerun")


@pytest.fixture
def staff_client(client):
    client.force_login(make_user("stef", staff=True))
    return client


def running_container(pool, host, health: str = Health.HEALTHY) -> Container:
    server = make_server(f"{pool.name}-server", kind="container", state={"health": health})
    now = timezone.now()
    return make_container(
        pool, host, state=ContainerState.RUNNING, server=server, started_at=now, idle_since=now
    )


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


@pytest.mark.django_db
def test_servers_page_shows_hosts_pools_and_their_holding_containers(client):
    host = make_docker_host("dock-1", gpus=["0", "1"], engine_version="27.3.1")
    make_docker_host(
        "dock-2", status=HostStatus.UNREACHABLE, error="Cannot connect to the Docker daemon"
    )
    pool = make_pool("flux", hosts=[host], min_size=1, max_size=3)
    ContainerPool.objects.filter(pk=pool.pk).update(desired_size=2, decision="2 waiting ÷ 1 = 2")
    running = running_container(pool, host)
    GpuReservation.objects.create(host=host, device_id="0", container=running)
    make_container(pool, host, state=ContainerState.ERROR, error=LOG_TAIL)
    make_container(pool, host, stopped_at=timezone.now(), stop_reason="scaled down: gone")
    client.force_login(make_user())

    html = client.get("/servers/").content.decode()

    assert 'id="containers-panel"' in html
    assert 'data-live-topic="containers"' in html
    assert "unix:///nonexistent/docker.sock" in html
    assert "Docker 27.3.1" in html
    assert "2 / 10 ports" in html  # the running one and the failed one hold theirs
    assert "1 / 2" in html  # GPUs used / listed
    assert "Cannot connect to the Docker daemon" in html  # the unreachable host says why
    assert f'href="/servers/pools/{pool.pk}/"' in html
    assert '1 / 2 <span class="muted">(1\N{EN DASH}3)</span>' in html  # live / desired (min-max)
    assert "2 waiting ÷ 1 = 2" in html
    assert f'href="/servers/{running.server_id}/"' in html
    assert f'<span class="badge healthy">{Health.HEALTHY.label}</span>' in html
    assert 'data-state="error"' in html
    assert "<pre>Traceback (most recent call last):" in html  # the log tail, in <details>
    assert "scaled down: gone" not in html  # removed: no longer holding
    assert "Drain</button>" not in html  # staff only


@pytest.mark.django_db
def test_servers_page_has_no_containers_section_without_hosts_or_pools(client):
    client.force_login(make_user())
    html = client.get("/servers/").content.decode()
    assert "<h2>Containers</h2>" not in html
    assert '<div id="containers-panel" data-live-topic="containers"></div>' in html


@pytest.mark.django_db
def test_pool_page_shows_its_configuration_containers_and_decisions(client):
    host = make_docker_host("dock-1")
    pool = make_pool("sdxl", hosts=[host], max_size=4, volumes=["/srv/models:/models:ro"])
    make_container(pool, host, state=ContainerState.STOPPING, stop_reason="drained by stef")
    now = timezone.now()
    for minutes, action in ((2, "start 2"), (1, "drain 1")):
        ScalingDecision.objects.create(
            pool=pool,
            at=now - timedelta(minutes=minutes),
            desired=2 if action == "start 2" else 1,
            live=0 if action == "start 2" else 2,
            work=3,
            action=action,
            reason=f"why {action}",
        )
    client.force_login(make_user())

    html = client.get(f"/servers/pools/{pool.pk}/").content.decode()

    assert "comfyweb-simulator:test" in html
    assert "/srv/models:/models:ro" in html
    assert "dock-1" in html
    assert "drained by stef" in html
    assert html.index("why drain 1") < html.index("why start 2")  # newest first
    assert "<td>drain 1</td>" in html
    assert f'data-live-topic="pool" data-live-key="{pool.pk}"' in html
    assert 'name="size"' not in html  # staff only


@pytest.mark.django_db
def test_pool_pages_need_a_login_and_a_pool(client):
    pool = make_pool()
    for url in (f"/servers/pools/{pool.pk}/", "/servers/containers/panel"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/login/")
    client.force_login(make_user())
    assert client.get(f"/servers/pools/{pool.pk + 1}/").status_code == 404


@pytest.mark.django_db
def test_non_staff_cannot_scale_pools_or_stop_containers(client, enqueued):
    pool = make_pool(hosts=[make_docker_host()])
    container = make_container(pool)
    client.force_login(make_user())
    for url in (
        f"/servers/pools/{pool.pk}/scale",
        f"/servers/pools/{pool.pk}/autoscale",
        f"/servers/containers/{container.pk}/drain",
        f"/servers/containers/{container.pk}/recreate",
        f"/servers/containers/{container.pk}/remove",
    ):
        response = client.post(url, {"size": "2"})
        assert response.status_code == 302, url
        assert response["Location"].startswith("/admin/login/"), url
    pool.refresh_from_db()
    container.refresh_from_db()
    assert (pool.pinned_size, container.state, enqueued) == (None, ContainerState.STARTING, [])


@pytest.mark.django_db
def test_staff_scale_a_pool_to_n_and_the_scheduler_is_woken(staff_client, enqueued, own_wake_keys):
    pool = make_pool(max_size=4)
    response = staff_client.post(
        f"/servers/pools/{pool.pk}/scale", {"size": "3", "next": "/servers/"}, follow=True
    )
    pool.refresh_from_db()
    assert pool.pinned_size == 3
    assert ("servers.jobs.tend_pools",) in enqueued
    assert response.redirect_chain == [("/servers/", 302)]
    assert messages_of(response) == [f"{pool.name}: scaling to 3; kept there until Autoscale."]


@pytest.mark.django_db
def test_a_size_above_the_maximum_is_refused(staff_client, enqueued, own_wake_keys):
    pool = make_pool(max_size=2)
    for size in ("3", "-1", "two"):
        response = staff_client.post(f"/servers/pools/{pool.pk}/scale", {"size": size}, follow=True)
        assert messages_of(response) == [f"{pool.name}: a size is a whole number, 0 to 2."]
    pool.refresh_from_db()
    assert pool.pinned_size is None
    assert enqueued == []


@pytest.mark.django_db
def test_staff_autoscale_unpins_a_pool(staff_client, enqueued, own_wake_keys):
    pool = make_pool(pinned_size=2)
    response = staff_client.post(f"/servers/pools/{pool.pk}/autoscale")
    assert response["Location"] == f"/servers/pools/{pool.pk}/"  # no next: the pool's page
    pool.refresh_from_db()
    assert pool.pinned_size is None
    assert ("servers.jobs.tend_pools",) in enqueued


@pytest.mark.django_db
def test_staff_drain_a_container_its_server_drains_too(staff_client, enqueued, own_wake_keys):
    host = make_docker_host()
    pool = make_pool(hosts=[host])
    container = running_container(pool, host)
    response = staff_client.post(f"/servers/containers/{container.pk}/drain", follow=True)
    container.refresh_from_db()
    assert container.state == ContainerState.STOPPING
    assert container.stop_reason == "drained by stef"
    assert Server.objects.get(pk=container.server_id).draining
    assert ("servers.jobs.tend_pools",) in enqueued
    assert messages_of(response) == [
        f"Container {host.name}:{container.port} of {pool.name}: draining: removed once idle."
    ]


@pytest.mark.django_db
def test_staff_recreate_drains_it_so_the_scheduler_starts_another(
    staff_client, enqueued, own_wake_keys
):
    pool = make_pool(hosts=[make_docker_host()])
    container = make_container(pool)
    staff_client.post(f"/servers/containers/{container.pk}/recreate")
    container.refresh_from_db()
    assert (container.state, container.stop_reason) == (
        ContainerState.STOPPING,
        "re-created by stef",
    )


@pytest.mark.django_db
def test_staff_remove_queues_the_workers_job(staff_client, enqueued, own_wake_keys):
    pool = make_pool(hosts=[make_docker_host()])
    container = running_container(pool, pool.hosts.get())
    staff_client.post(f"/servers/containers/{container.pk}/remove")
    assert ("servers.jobs.remove_container", container.pk, "removed by stef") in enqueued
    container.refresh_from_db()
    assert container.state == ContainerState.RUNNING  # the worker removes it, not the request


@pytest.mark.django_db
def test_actions_on_a_container_that_is_no_longer_live_say_so(staff_client, enqueued):
    pool = make_pool(hosts=[make_docker_host()])
    removed = make_container(pool, stopped_at=timezone.now(), stop_reason="scaled down")
    failed = make_container(pool, state=ContainerState.ERROR, error="exited")
    said = {
        (removed, "drain"): "is already removed",
        (removed, "remove"): "is already removed",
        (failed, "recreate"): "has failed and is being removed",
    }
    for (container, action), words in said.items():
        response = staff_client.post(f"/servers/containers/{container.pk}/{action}", follow=True)
        assert messages_of(response) == [
            f"Container {container.host.name}:{container.port} of {pool.name} {words}."
        ]
    assert enqueued == []
    assert Container.objects.get(pk=removed.pk).stop_reason == "scaled down"
    assert staff_client.post("/servers/containers/999999/drain").status_code == 404
    assert staff_client.post("/servers/pools/999999/scale", {"size": "1"}).status_code == 404


@pytest.mark.django_db
def test_staff_see_the_buttons_and_the_forms_they_submit(staff_client):
    pool = make_pool(hosts=[make_docker_host()])
    container = make_container(pool)
    html = staff_client.get("/servers/").content.decode()
    assert f'formaction="/servers/containers/{container.pk}/drain"' in html
    # The buttons live in a pushed fragment: the token is in the page's own form.
    assert '<form id="container-action" method="post" hidden>' in html
    assert 'name="csrfmiddlewaretoken"' in html
    pool_page = staff_client.get(f"/servers/pools/{pool.pk}/").content.decode()
    assert 'name="size" min="0" max="4"' in pool_page


@pytest.mark.django_db(transaction=True)
async def test_containers_changed_has_pages_refetch_their_containers():
    user = await sync_to_async(make_user)()
    pool = await sync_to_async(make_pool)(hosts=[await sync_to_async(make_docker_host)()])
    section = await connected_as(user)
    await section.send_json_to({"action": "subscribe", "topic": "containers"})
    assert (await section.receive_json_from(timeout=5))["type"] == "subscribed"
    snapshot = await section.receive_json_from(timeout=5)
    assert snapshot["target"] == "containers-panel"
    assert "No containers." in snapshot["html"]
    pool_page = await connected_as(user)
    await pool_page.send_json_to({"action": "subscribe", "topic": "pool", "key": str(pool.pk)})
    assert (await pool_page.receive_json_from(timeout=5))["type"] == "subscribed"
    assert (await pool_page.receive_json_from(timeout=5))["target"] == f"pool-{pool.pk}-live"

    container = await sync_to_async(make_container)(pool)
    await sync_to_async(containers_changed.send_robust)(sender=ContainerPool)

    hint = await section.receive_json_from(timeout=5)
    assert (hint["type"], hint["target"]) == ("fragment.refresh", "containers-panel")
    pool_hint = await pool_page.receive_json_from(timeout=5)
    assert (pool_hint["target"], pool_hint["url"]) == (
        f"pool-{pool.pk}-live",
        f"/servers/pools/{pool.pk}/panel",
    )
    browser = Client()
    await sync_to_async(browser.force_login)(user)
    for url in (hint["url"], pool_hint["url"]):
        html = (await sync_to_async(browser.get)(url)).content.decode()
        assert f'<tr id="container-{container.pk}" data-state="starting">' in html
    await section.disconnect()
    await pool_page.disconnect()


@pytest.mark.django_db
def test_a_deleted_pools_live_block_says_so():
    assert "This pool was deleted." in panel.render_pool(999999, make_user())


@pytest.mark.django_db
def test_the_pool_admin_shows_what_the_scheduler_decided(client):
    pool = make_pool(pinned_size=1)
    ContainerPool.objects.filter(pk=pool.pk).update(
        desired_size=1, decision="pinned to 1 by staff (max 4)", failures_in_row=2
    )
    for n in range(12):
        ScalingDecision.objects.create(
            pool=pool, desired=1, live=0, work=0, action="start 1", reason=f"reason {n:02}"
        )
    container = make_container(pool, host=make_docker_host(), stop_reason="drained by stef")
    client.force_login(make_user(superuser=True))

    html = client.get(f"/admin/servers/containerpool/{pool.pk}/change/").content.decode()
    assert 'name="pinned_size"' in html  # staff may edit the pin here too
    assert 'name="desired_size"' not in html  # the scheduler's: read-only
    assert "pinned to 1 by staff (max 4)" in html
    assert "Recent scaling decisions (last 10)" in html
    assert "reason 11" in html
    assert "reason 02" in html
    assert "reason 01" not in html

    html = client.get(f"/admin/servers/container/{container.pk}/change/").content.decode()
    assert "drained by stef" in html
    assert "Idle since" in html
