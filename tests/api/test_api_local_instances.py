"""/api/v1/local-instances (#14, L1): staff only, reading included; staff add, change
and remove instances, validated as in the admin, and ask the launcher to start, stop
or restart them (written, and the launcher woken: no process is touched here); the
console's last lines."""

from __future__ import annotations

import time

import pytest

from servers.local import console
from servers.local.control import WAKE_CHANNEL
from servers.local.models import LocalInstance, LocalState, Wanted
from servers.models import Server, ServerKind
from tests.api.callers import error_of, fields_named

pytestmark = pytest.mark.django_db

FIELDS = {
    "id",
    "name",
    "comfyui_dir",
    "start_script",
    "python",
    "port",
    "args",
    "environment",
    "gpus",
    "autostart",
    "auto_restart",
    "wanted",
    "state",
    "pid",
    "server",
    "restarts",
    "started_at",
    "error",
}
NON_STAFF = ["admin", "member", "viewer", "stranger"]


def make_instance(name: str = "studio", **fields) -> LocalInstance:
    values = {"comfyui_dir": "/opt/ComfyUI", "port": 8190} | fields
    return LocalInstance.objects.create(name=name, **values)


@pytest.fixture
def wake_ups(django_capture_on_commit_callbacks):
    """`wake_ups(call)`: the call's answer, and how many launcher wake-ups it sent
    (after its commit), read from the Redis channel the launcher listens on."""
    pubsub = console.redis_client().pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(WAKE_CHANNEL)
    while pubsub.get_message(timeout=0.2) is not None:
        pass

    def call(send):
        with django_capture_on_commit_callbacks(execute=True):
            response = send()
        received, deadline = 0, time.monotonic() + 2
        while time.monotonic() < deadline:
            if pubsub.get_message(timeout=0.1) is not None:
                received += 1
                deadline = time.monotonic() + 0.2  # anything else sent with it
        return response, received

    yield call
    pubsub.close()


def test_only_staff_may_see_or_touch_local_instances(world):
    instance = make_instance()
    paths = [
        ("GET", "local-instances"),
        ("POST", "local-instances"),
        ("GET", f"local-instances/{instance.pk}"),
        ("PATCH", f"local-instances/{instance.pk}"),
        ("DELETE", f"local-instances/{instance.pk}"),
        ("POST", f"local-instances/{instance.pk}/start"),
        ("POST", f"local-instances/{instance.pk}/stop"),
        ("POST", f"local-instances/{instance.pk}/restart"),
        ("GET", f"local-instances/{instance.pk}/logs"),
    ]
    body = {"name": "x", "comfyui_dir": "/opt/x", "port": 8191}
    for method, path in paths:
        for role in NON_STAFF:
            response = getattr(world, role)(method, path, body if method != "GET" else None)
            assert response.status_code == 403, (role, method, path, response.content)
        assert world.anonymous(method, path).status_code == 401
    instance.refresh_from_db()
    assert (instance.wanted, LocalInstance.objects.count()) == (Wanted.STOPPED, 1)


def test_staff_add_read_change_and_remove_an_instance(world):
    body = {
        "name": "studio",
        "comfyui_dir": "/opt/ComfyUI",
        "python": "/opt/ComfyUI/venv/bin/python",
        "port": 8190,
        "args": ["--lowvram"],
        "environment": {"HF_HOME": "/srv/hf"},
        "gpus": ["1"],
        "autostart": True,
    }
    created = world.staff("POST", "local-instances", body)
    assert created.status_code == 201, created.content
    made = created.json()
    assert set(made) == FIELDS
    assert {key: made[key] for key in body} == body
    assert (made["start_script"], made["auto_restart"], made["wanted"]) == ("", True, "stopped")
    assert (made["state"], made["pid"], made["server"], made["restarts"]) == (
        "stopped",
        None,
        None,
        0,
    )
    assert world.staff("GET", f"local-instances/{made['id']}").json() == made
    assert world.staff("GET", "local-instances").json() == [made]

    changed = world.staff("PATCH", f"local-instances/{made['id']}", {"args": [], "port": 8199})
    assert changed.status_code == 200, changed.content
    assert (changed.json()["args"], changed.json()["port"]) == ([], 8199)
    assert changed.json()["gpus"] == ["1"]  # what it did not name is kept

    assert world.staff("DELETE", f"local-instances/{made['id']}").status_code == 204
    assert not LocalInstance.objects.exists()
    assert world.staff("GET", f"local-instances/{made['id']}").status_code == 404


def test_a_change_leaves_what_the_launcher_wrote_alone(world):
    instance = make_instance()
    LocalInstance.objects.filter(pk=instance.pk).update(
        state=LocalState.RUNNING, pid=4242, restarts=3
    )
    body = world.staff("PATCH", f"local-instances/{instance.pk}", {"autostart": True}).json()
    assert (body["autostart"], body["state"], body["pid"], body["restarts"]) == (
        True,
        "running",
        4242,
        3,
    )


def test_removing_a_running_instance_takes_its_server_out_of_the_fleet(world):
    server = Server.objects.create(name="local-studio", base_url="http://127.0.0.1:8190")
    Server.objects.filter(pk=server.pk).update(kind=ServerKind.LOCAL)
    instance = make_instance(server=server, state=LocalState.RUNNING, pid=4242)
    assert world.staff("DELETE", f"local-instances/{instance.pk}").status_code == 204
    server.refresh_from_db()
    assert not server.enabled
    assert server not in Server.objects.in_fleet()


ANY = "0.0.0.0"  # noqa: S104 - what the arguments must not reach


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"name": "x", "port": 8191}, {"comfyui_dir"}),
        ({"name": "x", "port": 8191, "comfyui_dir": "/a", "start_script": "/b"}, {"comfyui_dir"}),
        ({"name": "x", "port": 8191, "comfyui_dir": "/opt/../etc"}, {"comfyui_dir"}),
        ({"name": "x", "port": 8191, "comfyui_dir": "ComfyUI"}, {"comfyui_dir"}),
        ({"name": "x", "port": 8191, "start_script": "/a/\nb"}, {"start_script"}),
        ({"name": "x", "port": 8191, "comfyui_dir": "/a", "python": "py; rm"}, {"python"}),
        ({"name": "x", "port": 8191, "comfyui_dir": "/a", "args": ["--listen", ANY]}, {"args"}),
        ({"name": "x", "port": 8191, "comfyui_dir": "/a", "args": [1]}, {"args[0]"}),
        (
            {"name": "x", "port": 8191, "comfyui_dir": "/a", "environment": {"A B": "1"}},
            {"environment"},
        ),
        ({"name": "x", "port": 8191, "comfyui_dir": "/a", "gpus": ["0", "0"]}, {"gpus"}),
        ({"name": "x", "port": 80, "comfyui_dir": "/a"}, {"port"}),
        ({"name": "../x", "port": 8191, "comfyui_dir": "/a"}, {"name"}),
        ({"name": "taken", "port": 8191, "comfyui_dir": "/a"}, {"name"}),
        ({"name": "x", "port": 8190, "comfyui_dir": "/a"}, {"port"}),
        ({"comfyui_dir": "/a"}, {"name", "port"}),
    ],
)
def test_a_bad_instance_is_refused_naming_its_fields(world, body, fields):
    make_instance("taken", port=8190)
    response = world.staff("POST", "local-instances", body)
    assert response.status_code == 400, response.content
    assert fields_named(response) == fields, error_of(response)
    assert LocalInstance.objects.count() == 1


def test_start_stop_and_restart_say_what_staff_want_and_wake_the_launcher(world, wake_ups):
    instance = make_instance()
    path = f"local-instances/{instance.pk}"

    started, woke = wake_ups(lambda: world.staff("POST", f"{path}/start"))
    assert started.status_code == 200, started.content
    assert (started.json()["wanted"], started.json()["state"], woke) == ("running", "stopped", 1)

    restarted, woke = wake_ups(lambda: world.staff("POST", f"{path}/restart"))
    assert (restarted.json()["wanted"], woke) == ("running", 1)
    instance.refresh_from_db()
    assert instance.restart_requested_at is not None

    stopped, woke = wake_ups(lambda: world.staff("POST", f"{path}/stop"))
    assert (stopped.json()["wanted"], woke) == ("stopped", 1)
    instance.refresh_from_db()
    assert instance.restart_requested_at is None


def test_starting_a_crashed_instance_gives_it_a_fresh_start(world):
    instance = make_instance(
        state=LocalState.CRASHED, error="crashed 5 times", consecutive_crashes=5
    )
    body = world.staff("POST", f"local-instances/{instance.pk}/start").json()
    assert (body["state"], body["wanted"]) == ("stopped", "running")
    instance.refresh_from_db()
    assert instance.consecutive_crashes == 0


def test_the_console_tail(world):
    instance = make_instance()
    console.forget(instance.pk)
    console.append(instance.pk, ["one", "two", "three"])
    path = f"local-instances/{instance.pk}/logs"
    assert world.staff("GET", path, tail=2).json() == {"lines": ["two", "three"]}
    assert world.staff("GET", path).json() == {"lines": ["one", "two", "three"]}
    assert world.staff("GET", path, tail=0).status_code == 400
    assert world.staff("GET", path, tail=console.LINES_KEPT + 1).status_code == 400
    console.forget(instance.pk)
