"""GET /health and the fleet under /servers: everyone signed in reads, staff change and test."""

from __future__ import annotations

import pytest
from django.utils import timezone

from comfyweb import health
from servers.models import FailureRecord, Server, ServerState
from servers.simulator import SimulatorConfig
from tasks.models import Status
from tests.api.callers import error_of, fields_named
from tests.factories import CLOSED_PORT_URL, make_server, make_task

pytestmark = pytest.mark.django_db

SERVER_FIELDS = {
    "id",
    "name",
    "url",
    "enabled",
    "status",
    "priority",
    "weight",
    "max_inflight",
    "inflight",
    "queue_running",
    "queue_pending",
    "last_checked_at",
    "last_failure",
}
NON_STAFF = ["admin", "member", "viewer", "stranger"]


# -- health ----------------------------------------------------------------------------


def test_health_reports_every_component(world):
    response = world.viewer("GET", "health")
    assert response.status_code == 200
    report = response.json()
    assert report["status"] in {"ok", "degraded"}
    assert {"database", "redis", "worker"} <= set(report["components"])
    assert all(isinstance(c["ok"], bool) for c in report["components"].values())
    assert report["components"]["database"]["ok"] is True


def test_health_is_degraded_when_a_component_is_down(world, monkeypatch):
    down = health.ComponentHealth("gpu-oracle", False, "unplugged", 1.25, {"clusters": 0})
    monkeypatch.setattr(health, "_checks", [health.check_database, lambda: down])
    report = world.member("GET", "health").json()
    assert report["status"] == "degraded"
    assert report["components"]["database"]["ok"] is True
    oracle = report["components"]["gpu-oracle"]
    assert (oracle["ok"], oracle["detail"], oracle["clusters"]) == (False, "unplugged", 0)


def test_health_is_ok_when_every_component_is(world, monkeypatch):
    monkeypatch.setattr(health, "_checks", [health.check_database])
    assert world.member("GET", "health").json()["status"] == "ok"


def test_health_needs_credentials(world):
    response = world.anonymous("GET", "health")
    assert response.status_code == 401
    assert error_of(response)["type"] == "not_authenticated"


# -- reading the fleet -----------------------------------------------------------------


@pytest.mark.parametrize("role", ["viewer", "stranger", "staff"])
def test_everyone_signed_in_lists_the_servers(world, role):
    make_server("gpu-2", priority=5)
    make_server("gpu-1", priority=1)
    response = getattr(world, role)("GET", "servers")
    assert response.status_code == 200
    servers = response.json()
    assert [s["name"] for s in servers] == ["gpu-1", "gpu-2"]
    assert set(servers[0]) >= SERVER_FIELDS


def test_a_server_shows_its_state_and_last_failure(world):
    server = make_server("gpu-1", base_url="http://127.0.0.1:8188", max_inflight=3, weight=2.5)
    now = timezone.now()
    ServerState.objects.filter(server=server).update(
        health="healthy", inflight=1, queue_running=1, queue_pending=4, last_checked_at=now
    )
    FailureRecord.objects.create(server=server, kind="health", reason="old timeout")
    FailureRecord.objects.create(server=server, kind="health", reason="connection refused")
    body = world.viewer("GET", f"servers/{server.pk}").json()
    assert body["url"] == "http://127.0.0.1:8188"
    assert (body["status"], body["inflight"], body["queue_running"], body["queue_pending"]) == (
        "healthy",
        1,
        1,
        4,
    )
    assert (body["max_inflight"], body["weight"], body["enabled"]) == (3, 2.5, True)
    assert body["last_checked_at"] is not None
    assert body["last_failure"]["reason"] == "connection refused"
    assert body["last_failure"]["at"]


def test_a_server_never_checked_is_unknown_without_failure(world):
    server = make_server("gpu-1")
    body = world.viewer("GET", f"servers/{server.pk}").json()
    assert body["status"] == "unknown"
    assert body["last_checked_at"] is None
    assert body["last_failure"] is None


def test_an_unknown_server_is_a_404(world):
    response = world.viewer("GET", "servers/999999")
    assert response.status_code == 404
    assert error_of(response)["type"] == "not_found"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "servers"),
        ("POST", "servers"),
        ("GET", "servers/{id}"),
        ("PATCH", "servers/{id}"),
        ("DELETE", "servers/{id}"),
        ("POST", "servers/{id}/test"),
    ],
)
def test_the_fleet_needs_credentials(world, method, path):
    server = make_server("gpu-1")
    response = world.anonymous(method, path.format(id=server.pk), {"name": "x"})
    assert response.status_code == 401
    assert Server.objects.filter(pk=server.pk, name="gpu-1").exists()


# -- adding servers ------------------------------------------------------------------


def test_staff_add_a_server(world):
    response = world.staff(
        "POST",
        "servers",
        {"name": "gpu-9", "url": "http://127.0.0.1:8190/", "priority": 7, "weight": 2,
         "max_inflight": 4, "enabled": False},
    )  # fmt: skip
    assert response.status_code == 201
    body = response.json()
    assert set(body) >= SERVER_FIELDS
    assert body["url"] == "http://127.0.0.1:8190"  # the trailing slash goes
    assert (body["priority"], body["weight"], body["max_inflight"], body["enabled"]) == (
        7,
        2.0,
        4,
        False,
    )
    assert body["status"] == "unknown"
    assert Server.objects.get(pk=body["id"]).name == "gpu-9"


def test_a_new_server_gets_the_defaults(world):
    body = world.staff("POST", "servers", {"name": "gpu-9", "url": "http://127.0.0.1:8190"}).json()
    assert (body["priority"], body["weight"], body["max_inflight"], body["enabled"]) == (
        100,
        1.0,
        2,
        True,
    )


@pytest.mark.parametrize("role", NON_STAFF)
def test_only_staff_add_servers(world, role):
    response = getattr(world, role)(
        "POST", "servers", {"name": "gpu-9", "url": "http://127.0.0.1:8190"}
    )
    assert response.status_code == 403
    assert error_of(response)["type"] == "permission_denied"
    assert not Server.objects.exists()


def test_adding_a_server_lists_every_problem(world):
    response = world.staff(
        "POST",
        "servers",
        {"name": "gpu-9", "url": "ftp://127.0.0.1", "weight": 0, "max_inflight": 0},
    )
    assert response.status_code == 400
    error = error_of(response)
    assert error["type"] == "validation_error"
    assert fields_named(response) == {"url", "weight", "max_inflight"}
    assert not Server.objects.exists()


def test_adding_a_server_without_name_or_url_names_both(world):
    response = world.staff("POST", "servers", {"priority": "high"})
    assert response.status_code == 400
    assert {"name", "url", "priority"} <= fields_named(response)


def test_a_server_name_is_unique(world):
    make_server("gpu-1")
    response = world.staff("POST", "servers", {"name": "gpu-1", "url": "http://127.0.0.1:8190"})
    assert response.status_code == 400
    assert fields_named(response) == {"name"}


def test_a_container_server_is_not_added_by_hand_but_by_a_pool(world):
    body = {"name": "gpu-9", "url": "http://127.0.0.1:8190", "kind": "container"}
    response = world.staff("POST", "servers", body)
    assert response.status_code == 400
    assert fields_named(response) == {"kind"}
    assert not Server.objects.exists()


def test_a_body_that_is_not_json_is_a_400(world):
    response = world.staff.client.post(
        "/api/v1/servers",
        data="{not json",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {world.staff.token}",
    )
    assert response.status_code == 400
    assert error_of(response)["type"] == "validation_error"


# -- changing and removing servers ---------------------------------------------------


def test_staff_change_a_server_and_keep_what_they_leave_out(world):
    server = make_server("gpu-1", priority=3, weight=1.5, max_inflight=4)
    response = world.staff("PATCH", f"servers/{server.pk}", {"enabled": False, "priority": 9})
    assert response.status_code == 200
    body = response.json()
    assert (body["enabled"], body["priority"], body["weight"], body["max_inflight"]) == (
        False,
        9,
        1.5,
        4,
    )
    server.refresh_from_db()
    assert (server.enabled, server.priority, server.name) == (False, 9, "gpu-1")


def test_changing_the_url_is_checked(world):
    server = make_server("gpu-1", base_url="http://127.0.0.1:8188")
    response = world.staff("PATCH", f"servers/{server.pk}", {"url": "not a url", "weight": -1})
    assert response.status_code == 400
    assert fields_named(response) == {"url", "weight"}
    server.refresh_from_db()
    assert server.base_url == "http://127.0.0.1:8188"


def test_a_patch_with_a_wrong_type_is_a_400(world):
    server = make_server("gpu-1")
    response = world.staff("PATCH", f"servers/{server.pk}", {"max_inflight": "many"})
    assert response.status_code == 400
    assert fields_named(response) == {"max_inflight"}


@pytest.mark.parametrize("role", NON_STAFF)
def test_only_staff_change_servers(world, role):
    server = make_server("gpu-1")
    response = getattr(world, role)("PATCH", f"servers/{server.pk}", {"enabled": False})
    assert response.status_code == 403
    server.refresh_from_db()
    assert server.enabled


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
def test_changing_an_unknown_server_is_a_404(world, method):
    response = world.staff(method, "servers/999999", {"enabled": False})
    assert response.status_code == 404
    assert error_of(response)["type"] == "not_found"


def test_staff_remove_an_idle_server(world):
    server = make_server("gpu-1")
    response = world.staff("DELETE", f"servers/{server.pk}")
    assert response.status_code == 204
    assert not Server.objects.filter(pk=server.pk).exists()


@pytest.mark.parametrize("role", NON_STAFF)
def test_only_staff_remove_servers(world, role):
    server = make_server("gpu-1")
    assert getattr(world, role)("DELETE", f"servers/{server.pk}").status_code == 403
    assert Server.objects.filter(pk=server.pk).exists()


def test_a_server_with_tasks_in_flight_is_not_removed(world):
    server = make_server("gpu-1")
    make_task(world.team, status=Status.RUNNING, server=server)
    make_task(world.team, status=Status.COMPLETED, server=server)
    response = world.staff("DELETE", f"servers/{server.pk}")
    assert response.status_code == 409
    error = error_of(response)
    assert error["type"] == "conflict"
    assert error["details"] == {"inflight": 1}
    assert Server.objects.filter(pk=server.pk).exists()


# -- testing a server now --------------------------------------------------------------


def test_staff_test_a_live_server(world, sim_thread):
    (sim,) = sim_thread.start(1, config=SimulatorConfig())
    server = make_server("gpu-1", base_url=sim.base_url)
    response = world.staff("POST", f"servers/{server.pk}/test")
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True
    assert body["error"] is None
    assert body["response_ms"] >= 0
    assert (body["queue_running"], body["queue_pending"]) == (0, 0)


def test_testing_an_unreachable_server_reports_the_error(world):
    server = make_server("gpu-1", base_url=CLOSED_PORT_URL)
    response = world.staff("POST", f"servers/{server.pk}/test")
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is False
    assert body["error"]
    assert (body["response_ms"], body["queue_running"], body["queue_pending"]) == (None, None, None)


@pytest.mark.parametrize("role", NON_STAFF)
def test_only_staff_test_servers(world, role):
    server = make_server("gpu-1", base_url=CLOSED_PORT_URL)
    response = getattr(world, role)("POST", f"servers/{server.pk}/test")
    assert response.status_code == 403
    assert error_of(response)["type"] == "permission_denied"


def test_testing_an_unknown_server_is_a_404(world):
    assert world.staff("POST", "servers/999999/test").status_code == 404
