"""/api/v1/pools (#13): everyone signed in reads the pools with their containers and
the scheduler's decisions; staff add, change, scale and remove them, validated as in
the admin, with the API's error envelope; every write wakes the scheduler. And the
fleet's list leaves out the servers of removed containers."""

from __future__ import annotations

import uuid

import pytest
from django.core.cache import cache

from servers.containers import tending
from servers.containers.models import Container, ContainerPool, ContainerState, ScalingDecision
from servers.models import Server, ServerKind
from tests.api.callers import error_of, fields_named
from tests.factories import make_docker_host, make_pool, make_server

pytestmark = pytest.mark.django_db

POOL_FIELDS = {
    "id",
    "name",
    "image",
    "command",
    "environment",
    "volumes",
    "container_port",
    "min_size",
    "max_size",
    "jobs_per_container",
    "gpus_per_container",
    "idle_seconds",
    "hosts",
    "enabled",
    "pinned_size",
    "desired_size",
    "decision",
    "deleting",
    "containers",
    "decisions",
}
CONTAINER_FIELDS = {
    "id",
    "host",
    "host_name",
    "port",
    "gpus",
    "state",
    "server",
    "docker_id",
    "created_at",
    "started_at",
    "error",
    "stop_reason",
}
DECISION_FIELDS = {"at", "desired", "live", "work", "action", "reason"}
NON_STAFF = ["admin", "member", "viewer", "stranger"]


@pytest.fixture
def wakes(enqueued, monkeypatch, django_capture_on_commit_callbacks):
    """Calls `wakes(call)`: the call's answer, and whether it queued a scheduler pass
    (after its commit). Own wake-up keys: other test runs share the Redis."""
    token = uuid.uuid4().hex
    monkeypatch.setattr(tending, "WAKE_KEY", f"test:{token}:tend-wake")
    monkeypatch.setattr(tending, "RERUN_KEY", f"test:{token}:tend-rerun")

    def call(send):
        cache.delete(tending.WAKE_KEY)
        enqueued.clear()
        with django_capture_on_commit_callbacks(execute=True):
            response = send()
        return response, (tending.JOB,) in enqueued

    return call


def test_everyone_signed_in_reads_a_pool_with_its_holding_containers_and_decisions(world):
    host = make_docker_host("gpu-box", gpus=["0", "1"])
    pool = make_pool("sdxl", hosts=[host], environment={"HF_HOME": "/models"})
    server = make_server("sdxl-1", kind=ServerKind.CONTAINER)
    running = Container.objects.create(
        pool=pool,
        host=host,
        port=20000,
        gpus=["0"],
        state=ContainerState.RUNNING,
        server=server,
        docker_id="abc123",
    )
    failed = Container.objects.create(
        pool=pool, host=host, port=20001, state=ContainerState.ERROR, error="exited 1"
    )
    Container.objects.create(pool=pool, host=host, port=20002).release()  # removed
    for n in range(12):
        ScalingDecision.objects.create(
            pool=pool, desired=n, live=n, work=n, action="hold", reason=f"step {n}"
        )
    for role in [*NON_STAFF, "staff"]:
        (listed,) = getattr(world, role)("GET", "pools").json()
        assert set(listed) >= POOL_FIELDS
        assert (listed["name"], listed["hosts"], listed["environment"]) == (
            "sdxl",
            [host.pk],
            {"HF_HOME": "/models"},
        )
    by_id = {container["id"]: container for container in listed["containers"]}
    assert set(by_id) == {running.pk, failed.pk}
    assert set(by_id[running.pk]) >= CONTAINER_FIELDS
    assert by_id[running.pk] | {"created_at": None} == {
        "id": running.pk,
        "host": host.pk,
        "host_name": "gpu-box",
        "port": 20000,
        "gpus": ["0"],
        "state": "running",
        "server": server.pk,
        "docker_id": "abc123",
        "created_at": None,
        "started_at": None,
        "error": "",
        "stop_reason": "",
    }
    assert (by_id[failed.pk]["state"], by_id[failed.pk]["error"]) == ("error", "exited 1")
    assert len(listed["decisions"]) == 10
    assert set(listed["decisions"][0]) == DECISION_FIELDS
    assert [d["reason"] for d in listed["decisions"][:2]] == ["step 11", "step 10"]
    assert world.viewer("GET", f"pools/{pool.pk}").json() == listed
    assert world.anonymous("GET", "pools").status_code == 401
    assert world.anonymous("GET", f"pools/{pool.pk}").status_code == 401
    assert world.viewer("GET", "pools/999999").status_code == 404


def test_staff_add_change_and_read_back_a_pool_and_each_write_wakes_the_scheduler(world, wakes):
    a, b = make_docker_host("a"), make_docker_host("b")
    body = {
        "name": "flux",
        "image": "comfyui:flux",
        "command": ["python", "main.py", "--listen"],
        "environment": {"HF_HOME": "/models"},
        "volumes": ["/srv/models:/models:ro"],
        "max_size": 3,
        "gpus_per_container": 1,
        "hosts": [a.pk, b.pk],
    }
    created, woke = wakes(lambda: world.staff("POST", "pools", body))
    assert created.status_code == 201, created.content
    assert woke
    made = created.json()
    assert {key: made[key] for key in body} == body | {"hosts": sorted([a.pk, b.pk])}
    assert (made["min_size"], made["container_port"], made["idle_seconds"]) == (0, 8188, 300)
    assert made["models_mount"] == "/opt/ComfyUI/models"  # the library, read-only
    assert (made["enabled"], made["pinned_size"], made["deleting"]) == (True, None, False)
    assert (made["containers"], made["decisions"]) == ([], [])
    assert world.viewer("GET", f"pools/{made['id']}").json() == made

    changed, woke = wakes(
        lambda: world.staff(
            "PATCH", f"pools/{made['id']}", {"hosts": None, "min_size": 1, "command": None}
        )
    )
    assert changed.status_code == 200, changed.content
    assert woke
    assert (changed.json()["hosts"], changed.json()["min_size"]) == (None, 1)
    assert changed.json()["command"] is None
    assert changed.json()["image"] == "comfyui:flux"  # what it did not name is kept
    pool = ContainerPool.objects.get(pk=made["id"])
    assert not pool.hosts.exists()  # every host: stored as none chosen
    assert world.staff("PATCH", f"pools/{pool.pk}", {"hosts": [b.pk]}).json()["hosts"] == [b.pk]


def test_a_change_leaves_what_the_scheduler_wrote_alone(world):
    pool = make_pool("p", max_size=4)
    ContainerPool.objects.filter(pk=pool.pk).update(desired_size=3, decision="queue of 6")
    body = world.staff("PATCH", f"pools/{pool.pk}", {"idle_seconds": 60}).json()
    assert (body["idle_seconds"], body["desired_size"], body["decision"]) == (60, 3, "queue of 6")


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"name": "x", "image": "i", "min_size": 3, "max_size": 2}, {"max_size"}),
        ({"name": "x", "image": "i", "command": "python main.py"}, {"command"}),
        ({"name": "x", "image": "i", "command": ["python", 1]}, {"command[1]"}),
        ({"name": "x", "image": "i", "environment": {"A": 1}}, {"environment.A"}),
        ({"name": "x", "image": "i", "environment": {"": "v"}}, {"environment"}),
        ({"name": "x", "image": "i", "volumes": ["/srv/models"]}, {"volumes"}),
        ({"name": "x", "image": "i", "volumes": ["/a:/b:rx"]}, {"volumes"}),
        ({"name": "x", "image": "i", "models_mount": "models"}, {"models_mount"}),
        (
            {"name": "x", "image": "i", "volumes": ["/srv/m:/opt/ComfyUI/models/loras"]},
            {"volumes"},
        ),
        ({"name": "x", "image": "i", "hosts": [999999]}, {"hosts"}),
        ({"name": "x", "image": "i", "container_port": 70000}, {"container_port"}),
        ({"name": "x", "image": "i", "jobs_per_container": 0}, {"jobs_per_container"}),
        ({"name": "taken", "image": "i"}, {"name"}),
        ({"name": "", "image": ""}, {"name", "image"}),
        ({"image": "i"}, {"name"}),
    ],
)
def test_a_bad_pool_is_refused_naming_its_fields(world, body, fields):
    make_pool("taken")
    response = world.staff("POST", "pools", body)
    assert response.status_code == 400, response.content
    assert error_of(response)["type"] == "validation_error"
    assert fields_named(response) == fields
    assert ContainerPool.objects.count() == 1


def test_a_bad_change_is_refused_and_changes_nothing(world):
    host = make_docker_host()
    pool = make_pool("p", hosts=[host], min_size=1, max_size=2)
    refused = world.staff("PATCH", f"pools/{pool.pk}", {"max_size": 0, "hosts": [host.pk, 999999]})
    assert refused.status_code == 400
    assert fields_named(refused) == {"max_size", "hosts"}
    refused = world.staff("PATCH", f"pools/{pool.pk}", {"name": None})
    assert fields_named(refused) == {"name"}
    pool.refresh_from_db()
    assert (pool.name, pool.max_size, list(pool.hosts.all())) == ("p", 2, [host])


def test_only_staff_change_pools(world):
    pool = make_pool("p", max_size=2)
    for role in NON_STAFF:
        caller = getattr(world, role)
        assert caller("POST", "pools", {"name": "n", "image": "i"}).status_code == 403
        assert caller("PATCH", f"pools/{pool.pk}", {"enabled": False}).status_code == 403
        assert caller("POST", f"pools/{pool.pk}/scale", {"size": 1}).status_code == 403
        refused = caller("DELETE", f"pools/{pool.pk}")
        assert refused.status_code == 403
        assert error_of(refused)["type"] == "permission_denied"
    for method, path in [
        ("POST", "pools"),
        ("PATCH", f"pools/{pool.pk}"),
        ("POST", f"pools/{pool.pk}/scale"),
        ("DELETE", f"pools/{pool.pk}"),
    ]:
        assert world.anonymous(method, path, {"size": 1}).status_code == 401
    pool.refresh_from_db()
    assert (pool.enabled, pool.pinned_size, pool.delete_requested_at) == (True, None, None)
    assert ContainerPool.objects.count() == 1


def test_a_pool_with_no_containers_is_removed_at_once(world, wakes):
    pool = make_pool("empty")
    removed = Container.objects.create(pool=pool, host=make_docker_host(), port=20000)
    removed.release()  # only its record remains
    response, _ = wakes(lambda: world.staff("DELETE", f"pools/{pool.pk}"))
    assert response.status_code == 204
    assert not ContainerPool.objects.exists()
    assert not Container.objects.exists()
    assert world.viewer("GET", f"pools/{pool.pk}").status_code == 404


def test_a_pool_with_containers_drains_them_first_and_says_so_again_if_asked(world, wakes):
    pool = make_pool("busy", max_size=2)
    container = Container.objects.create(pool=pool, host=make_docker_host(), port=20000)
    response, woke = wakes(lambda: world.staff("DELETE", f"pools/{pool.pk}"))
    assert response.status_code == 202, response.content
    assert woke
    body = response.json()
    assert (body["deleting"], body["enabled"]) == (True, False)
    assert [c["id"] for c in body["containers"]] == [container.pk]
    pool.refresh_from_db()
    asked_at = pool.delete_requested_at
    assert asked_at is not None
    assert Container.objects.filter(pk=container.pk, stopped_at__isnull=True).exists()

    again = world.staff("DELETE", f"pools/{pool.pk}")
    assert (again.status_code, again.json()["deleting"]) == (202, True)
    pool.refresh_from_db()
    assert pool.delete_requested_at == asked_at  # the first request stands
    # Being deleted: nothing left to change.
    for method, path, body in [
        ("PATCH", f"pools/{pool.pk}", {"enabled": True}),
        ("POST", f"pools/{pool.pk}/scale", {"size": 1}),
    ]:
        refused = world.staff(method, path, body)
        assert refused.status_code == 409
        assert error_of(refused)["type"] == "conflict"
    pool.refresh_from_db()
    assert (pool.enabled, pool.pinned_size) == (False, None)


def test_staff_pin_a_pools_size_within_its_maximum_and_unpin_it(world, wakes):
    pool = make_pool("p", max_size=3)
    pinned, woke = wakes(lambda: world.staff("POST", f"pools/{pool.pk}/scale", {"size": 3}))
    assert pinned.status_code == 200, pinned.content
    assert woke
    assert pinned.json()["pinned_size"] == 3
    assert world.staff("POST", f"pools/{pool.pk}/scale", {"size": 0}).json()["pinned_size"] == 0
    for size in (4, -1, "two"):
        refused = world.staff("POST", f"pools/{pool.pk}/scale", {"size": size})
        assert refused.status_code == 400, refused.content
        assert fields_named(refused) == {"size"}
    assert fields_named(world.staff("POST", f"pools/{pool.pk}/scale", {})) == {"size"}
    pool.refresh_from_db()
    assert pool.pinned_size == 0
    unpinned, woke = wakes(lambda: world.staff("POST", f"pools/{pool.pk}/scale", {"size": None}))
    assert (unpinned.status_code, unpinned.json()["pinned_size"], woke) == (200, None, True)
    assert world.staff("POST", "pools/999999/scale", {"size": 1}).status_code == 404


def test_the_fleet_lists_running_container_servers_but_not_removed_ones(world):
    host, pool = make_docker_host(), make_pool("p")
    fixed = make_server("gpu-1")
    live = make_server("p-live", kind=ServerKind.CONTAINER, base_url="http://127.0.0.1:20000")
    gone = make_server("p-gone", kind=ServerKind.CONTAINER, base_url="http://127.0.0.1:20001")
    Container.objects.create(
        pool=pool, host=host, port=20000, server=live, state=ContainerState.RUNNING
    )
    Container.objects.create(pool=pool, host=host, port=20001, server=gone).release()
    listed = {server["name"]: server for server in world.viewer("GET", "servers").json()}
    assert set(listed) == {"gpu-1", "p-live"}
    assert (listed["p-live"]["kind"], listed["p-live"]["url"]) == (
        "container",
        "http://127.0.0.1:20000",
    )
    assert listed["gpu-1"]["kind"] == fixed.kind
    # Its row stays, for the tasks that ran there: found by id.
    one = world.viewer("GET", f"servers/{gone.pk}")
    assert (one.status_code, one.json()["kind"]) == (200, "container")
    assert Server.objects.filter(pk=gone.pk).exists()
