"""The local instances' admin: configuration edited, the launcher's record read-only
and never written back, start/stop/restart as actions, removal through control."""

from __future__ import annotations

import pytest

from servers.local.models import LocalInstance, LocalState, Wanted
from servers.models import Server, ServerKind
from tests.factories import make_user

pytestmark = pytest.mark.django_db

ADMIN = "/admin/servers/localinstance/"


@pytest.fixture
def staff_client(client):
    client.force_login(make_user(superuser=True))
    return client


def form(**fields) -> dict[str, str]:
    values = {
        "name": "studio",
        "comfyui_dir": "/opt/ComfyUI",
        "start_script": "",
        "python": "python3",
        "port": "8190",
        "args": "[]",
        "environment": "{}",
        "gpus": "[]",
        "auto_restart": "on",
    }
    return values | fields


def test_staff_add_an_instance_and_hostile_input_is_refused(staff_client):
    refused = staff_client.post(f"{ADMIN}add/", form(comfyui_dir="/opt/../etc"))
    assert refused.status_code == 200
    assert "Enter an absolute, normalised path" in refused.content.decode()
    assert not LocalInstance.objects.exists()

    added = staff_client.post(f"{ADMIN}add/", form(args='["--lowvram"]'))
    assert added.status_code == 302, added.content.decode()[:2000]
    instance = LocalInstance.objects.get()
    assert (instance.args, instance.state, instance.wanted) == (["--lowvram"], "stopped", "stopped")


def test_saving_the_form_never_writes_back_what_the_launcher_saw(staff_client):
    instance = LocalInstance.objects.create(name="studio", comfyui_dir="/opt/ComfyUI", port=8190)
    page = staff_client.get(f"{ADMIN}{instance.pk}/change/").content.decode()
    assert 'name="port"' in page
    assert 'name="pid"' not in page  # the launcher's: read-only
    # The launcher starts it while the form is open.
    LocalInstance.objects.filter(pk=instance.pk).update(
        state=LocalState.RUNNING, pid=4242, wanted=Wanted.RUNNING
    )

    saved = staff_client.post(f"{ADMIN}{instance.pk}/change/", form(port="8191"))

    assert saved.status_code == 302
    instance.refresh_from_db()
    assert (instance.port, instance.state, instance.pid, instance.wanted) == (
        8191,
        LocalState.RUNNING,
        4242,
        Wanted.RUNNING,
    )


def test_the_actions_say_what_staff_want(staff_client):
    instance = LocalInstance.objects.create(
        name="studio", comfyui_dir="/opt/ComfyUI", port=8190, state=LocalState.CRASHED
    )
    for action, wanted in [("start", "running"), ("restart", "running"), ("stop", "stopped")]:
        response = staff_client.post(
            ADMIN, {"action": action, "_selected_action": [instance.pk]}, follow=True
        )
        assert response.status_code == 200
        instance.refresh_from_db()
        assert instance.wanted == wanted, action
    assert instance.state == LocalState.STOPPED  # the start gave the crashed one a fresh try


def test_deleting_an_instance_takes_its_server_out_of_the_fleet(staff_client):
    server = Server.objects.create(name="local-studio", base_url="http://127.0.0.1:8190")
    Server.objects.filter(pk=server.pk).update(kind=ServerKind.LOCAL)
    instance = LocalInstance.objects.create(
        name="studio", comfyui_dir="/opt/ComfyUI", port=8190, server=server
    )
    response = staff_client.post(f"{ADMIN}{instance.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not LocalInstance.objects.exists()
    server.refresh_from_db()
    assert not server.enabled
