"""/api/v1/docker-hosts (#13): everyone signed in reads the hosts; staff add, change,
remove and check them, validated as in the admin, with the API's error envelope."""

from __future__ import annotations

import pytest

from servers.containers.models import Container, DockerHost, HostStatus
from tests.api.callers import error_of, fields_named
from tests.factories import make_docker_host, make_pool

pytestmark = pytest.mark.django_db

HOST_FIELDS = {
    "id",
    "name",
    "docker_url",
    "publish_address",
    "port_min",
    "port_max",
    "gpus",
    "enabled",
    "status",
    "error",
    "engine_id",
    "containers",
}
NON_STAFF = ["admin", "member", "viewer", "stranger"]


def test_everyone_signed_in_reads_the_hosts_with_their_container_counts(world):
    host = make_docker_host("gpu-box", gpus=["0", "1"], engine_id="ABCD", error="")
    pool = make_pool()
    Container.objects.create(pool=pool, host=host, port=20000)
    Container.objects.create(pool=pool, host=host, port=20001)
    removed = Container.objects.create(pool=pool, host=host, port=20002)
    removed.release()
    for role in [*NON_STAFF, "staff"]:
        (listed,) = getattr(world, role)("GET", "docker-hosts").json()
        assert set(listed) >= HOST_FIELDS
        assert (listed["name"], listed["gpus"], listed["containers"]) == ("gpu-box", ["0", "1"], 2)
        assert (listed["status"], listed["engine_id"]) == ("ok", "ABCD")
    one = world.viewer("GET", f"docker-hosts/{host.pk}").json()
    assert one == listed
    assert world.anonymous("GET", "docker-hosts").status_code == 401
    assert world.viewer("GET", "docker-hosts/999999").status_code == 404


def test_staff_add_a_host_which_is_unknown_until_checked(world):
    response = world.staff(
        "POST",
        "docker-hosts",
        {"name": "box-2", "docker_url": "tcp://127.0.0.2:2375", "gpus": ["0"]},
    )
    assert response.status_code == 201, response.content
    made = response.json()
    assert made["status"] == "unknown"
    assert (made["port_min"], made["port_max"], made["publish_address"]) == (
        20000,
        20099,
        "127.0.0.1",
    )
    assert made["containers"] == 0
    assert DockerHost.objects.get(pk=made["id"]).gpus == ["0"]
    # A tcp engine's machine has its own disks: no models library until staff say where.
    assert (made["models_dir"], made["library_dir"]) == ("", "")
    changed = world.staff("PATCH", f"docker-hosts/{made['id']}", {"models_dir": "/srv/models"})
    assert changed.json()["library_dir"] == "/srv/models"


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"name": "x", "docker_url": "http://127.0.0.1:2375"}, {"docker_url"}),
        ({"name": "x", "docker_url": "unix:///s", "port_min": 9, "port_max": 8}, {"port_max"}),
        ({"name": "x", "docker_url": "unix:///s", "port_max": 70000}, {"port_max"}),
        ({"name": "x", "docker_url": "unix:///s", "gpus": ["0", "0"]}, {"gpus"}),
        ({"name": "x", "docker_url": "unix:///s", "publish_address": "box"}, {"publish_address"}),
        ({"name": "taken", "docker_url": "unix:///s"}, {"name"}),
        ({"name": "x", "docker_url": "unix:///s", "models_dir": "srv/../models"}, {"models_dir"}),
    ],
)
def test_a_bad_host_is_refused_naming_its_fields(world, body, fields):
    make_docker_host("taken")
    response = world.staff("POST", "docker-hosts", body)
    assert response.status_code == 400
    assert error_of(response)["type"] == "validation_error"
    assert fields_named(response) == fields
    assert DockerHost.objects.count() == 1


def test_only_staff_change_hosts(world):
    host = make_docker_host("box")
    for role in NON_STAFF:
        caller = getattr(world, role)
        assert (
            caller("POST", "docker-hosts", {"name": "n", "docker_url": "unix:///s"}).status_code
            == 403
        )
        assert caller("PATCH", f"docker-hosts/{host.pk}", {"enabled": False}).status_code == 403
        assert caller("DELETE", f"docker-hosts/{host.pk}").status_code == 403
        assert caller("POST", f"docker-hosts/{host.pk}/check").status_code == 403
    host.refresh_from_db()
    assert host.enabled
    assert DockerHost.objects.count() == 1


def test_a_new_docker_url_forgets_what_was_seen_of_the_old_engine(world):
    host = make_docker_host("box", engine_id="OLD", engine_version="20.10")
    kept = world.staff("PATCH", f"docker-hosts/{host.pk}", {"port_max": 20050}).json()
    assert (kept["port_max"], kept["status"], kept["engine_id"]) == (20050, "ok", "OLD")
    moved = world.staff("PATCH", f"docker-hosts/{host.pk}", {"docker_url": "tcp://10.0.0.9:2375"})
    assert moved.status_code == 200
    assert (moved.json()["status"], moved.json()["engine_id"]) == ("unknown", "")
    bad = world.staff("PATCH", f"docker-hosts/{host.pk}", {"port_min": 30000})
    assert (bad.status_code, fields_named(bad)) == (400, {"port_max"})


def test_a_host_with_containers_is_not_removed(world):
    host = make_docker_host("busy")
    container = Container.objects.create(pool=make_pool(), host=host, port=20000)
    refused = world.staff("DELETE", f"docker-hosts/{host.pk}")
    assert refused.status_code == 409
    assert error_of(refused)["details"] == {"containers": 1}
    container.release()  # removed from its engine: only its record remains
    assert world.staff("DELETE", f"docker-hosts/{host.pk}").status_code == 204
    assert not DockerHost.objects.exists()
    assert not Container.objects.exists()


def test_staff_check_a_host_and_see_why_it_is_unreachable(world):
    host = make_docker_host("gone", docker_url="unix:///nonexistent.sock", status=HostStatus.OK)
    checked = world.staff("POST", f"docker-hosts/{host.pk}/check").json()
    assert checked["status"] == "unreachable"
    assert "No such file" in checked["error"]
