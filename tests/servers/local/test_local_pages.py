"""A local instance's page (staff only): its configuration, status and console, the
start/stop/restart buttons, and the live blocks the launcher pushes."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from servers.local import console, panel
from servers.local.models import LocalInstance, LocalState, Wanted
from tests.factories import make_user
from tests.live_socket import connected_as


def make_instance(**fields) -> LocalInstance:
    values = {"name": "studio", "comfyui_dir": "/opt/ComfyUI", "port": 8190} | fields
    instance = LocalInstance.objects.create(**values)
    console.forget(instance.pk)
    return instance


@pytest.fixture
def staff_client(client):
    client.force_login(make_user("stef", staff=True))
    return client


@pytest.mark.django_db
def test_staff_see_an_instance_with_its_status_and_console(staff_client):
    instance = make_instance(
        args=["--lowvram"], state=LocalState.CRASHED, error="ComfyUI exited with code 1; boom"
    )
    console.append(instance.pk, ["Starting server", "<script>alert(1)</script>"])

    html = staff_client.get(f"/servers/local/{instance.pk}/").content.decode()

    assert "<code>/opt/ComfyUI/main.py</code>" in html
    assert "<code>--lowvram</code>" in html
    assert '<span class="badge local-crashed">Crashed</span>' in html
    assert "ComfyUI exited with code 1; boom" in html
    assert "Starting server" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # console lines are escaped
    assert f'id="local-{instance.pk}-console"' in html
    console.forget(instance.pk)


@pytest.mark.django_db
def test_others_are_sent_to_the_admin_login(client):
    instance = make_instance()
    client.force_login(make_user("ada"))
    response = client.get(f"/servers/local/{instance.pk}/")
    assert (response.status_code, response.url.split("?")[0]) == (302, "/admin/login/")
    assert client.post(f"/servers/local/{instance.pk}/start").status_code == 302
    instance.refresh_from_db()
    assert instance.wanted == Wanted.STOPPED


@pytest.mark.django_db
def test_the_buttons_say_what_staff_want_and_come_back(staff_client):
    instance = make_instance()
    for action, wanted in [("start", "running"), ("restart", "running"), ("stop", "stopped")]:
        response = staff_client.post(f"/servers/local/{instance.pk}/{action}", follow=True)
        assert response.redirect_chain == [(f"/servers/local/{instance.pk}/", 302)]
        instance.refresh_from_db()
        assert instance.wanted == wanted


@pytest.mark.django_db(transaction=True)
async def test_staff_follow_the_console_live_and_others_may_not():
    instance = await sync_to_async(make_instance)()
    subscribe = {"action": "subscribe", "topic": "local-instance", "key": str(instance.pk)}
    staff = await connected_as(await sync_to_async(make_user)("stef", staff=True))
    await staff.send_json_to(subscribe)
    assert (await staff.receive_json_from(timeout=5))["type"] == "subscribed"
    snapshot = {(await staff.receive_json_from(timeout=5))["target"] for _ in range(2)}
    assert snapshot == {f"local-{instance.pk}-status", f"local-{instance.pk}-console"}
    member = await connected_as(await sync_to_async(make_user)("ada"))
    await member.send_json_to(subscribe)
    assert (await member.receive_json_from(timeout=5))["type"] == "error"

    await sync_to_async(console.append)(instance.pk, ["Loading custom nodes"])
    await sync_to_async(panel.publish)(instance.pk, ["Loading custom nodes"])

    received = {}
    for _ in range(3):
        message = await staff.receive_json_from(timeout=5)
        received[message.get("target") or message["event"]] = message
    assert received["console.lines"]["data"] == {
        "instance": instance.pk,
        "lines": ["Loading custom nodes"],
    }
    assert "Loading custom nodes" in received[f"local-{instance.pk}-console"]["html"]
    assert "Stopped" in received[f"local-{instance.pk}-status"]["html"]
    assert await member.receive_nothing(timeout=0.5)
    await staff.disconnect()
    await member.disconnect()
    await sync_to_async(console.forget)(instance.pk)


# -- adding, changing and removing from the pages -------------------------------------


@pytest.mark.django_db
def test_staff_add_an_instance_typing_arguments_environment_and_gpus_as_text(staff_client):
    response = staff_client.post(
        "/servers/local/add",
        {
            "name": "studio",
            "comfyui_dir": "/opt/ComfyUI",
            "python": "/opt/ComfyUI/venv/bin/python",
            "port": "8190",
            "args": "--lowvram --preview-method 'auto taesd'",
            "environment": "HF_HOME=/srv/hf\n\nTOKEN=a=b",
            "gpus": "0, 1",
            "auto_restart": "on",
        },
    )
    instance = LocalInstance.objects.get(name="studio")
    assert response.url == f"/servers/local/{instance.pk}/"
    assert instance.args == ["--lowvram", "--preview-method", "auto taesd"]
    assert instance.environment == {"HF_HOME": "/srv/hf", "TOKEN": "a=b"}
    assert instance.gpus == ["0", "1"]
    assert (instance.auto_restart, instance.autostart, instance.state) == (True, False, "stopped")


@pytest.mark.django_db
def test_the_add_form_names_what_is_wrong_and_saves_nothing(staff_client):
    make_instance(name="taken", port=8190)
    response = staff_client.post(
        "/servers/local/add",
        {
            "name": "bad name",
            "comfyui_dir": "relative/dir",
            "python": "python3",
            "port": "8190",
            "args": "--port 9000 'unclosed",
            "environment": "NO_EQUALS_SIGN",
        },
    )
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert set(errors) == {"name", "comfyui_dir", "port", "args", "environment"}
    assert "No closing quotation" in str(errors["args"])
    assert LocalInstance.objects.count() == 1


@pytest.mark.django_db
def test_the_add_page_offers_the_simulator_as_a_stand_in_install(staff_client):
    html = staff_client.get("/servers/local/add").content.decode()
    assert "servers/simulator/comfyui</code>" in html


@pytest.mark.django_db
def test_editing_changes_the_configuration_and_never_the_launchers_record(staff_client):
    instance = make_instance(
        state=LocalState.RUNNING, pid=4242, restarts=3, args=["--x", "a b"], environment={"A": "1"}
    )
    form = staff_client.get(f"/servers/local/{instance.pk}/edit").context["form"]
    assert (form["args"].value(), form["environment"].value()) == ("--x 'a b'", "A=1")
    response = staff_client.post(
        f"/servers/local/{instance.pk}/edit",
        {
            "name": "studio",
            "comfyui_dir": "/opt/ComfyUI",
            "python": "python3",
            "port": "8191",
            "args": "--highvram",
            "gpus": "",
        },
    )
    assert response.url == f"/servers/local/{instance.pk}/"
    instance.refresh_from_db()
    assert (instance.port, instance.args) == (8191, ["--highvram"])
    assert (instance.state, instance.pid, instance.restarts) == ("running", 4242, 3)


@pytest.mark.django_db
def test_removing_an_instance_takes_its_server_out_of_the_fleet(staff_client):
    from servers.models import Server, ServerKind

    server = Server.objects.create(
        name="local-studio", base_url="http://127.0.0.1:8190", kind=ServerKind.LOCAL
    )
    instance = make_instance(server=server, state=LocalState.RUNNING, pid=4242)
    response = staff_client.post(f"/servers/local/{instance.pk}/delete")
    assert response.url == "/servers/"
    assert not LocalInstance.objects.exists()
    server.refresh_from_db()
    assert not server.enabled


@pytest.mark.django_db
def test_the_servers_page_lists_local_instances_for_staff_only(client):
    instance = make_instance(state=LocalState.CRASHED, error="exited with code 1")
    client.force_login(make_user("stef", staff=True))
    html = client.get("/servers/").content.decode()
    assert f'href="/servers/local/{instance.pk}/"' in html
    assert '<span class="badge local-crashed">Crashed</span>' in html
    assert 'href="/servers/local/add"' in html
    client.force_login(make_user("ada"))
    html = client.get("/servers/").content.decode()
    assert "local-instances-rows" not in html
    assert "/servers/local/" not in html


@pytest.mark.django_db(transaction=True)
async def test_the_list_follows_state_changes_live_for_staff_only():
    instance = await sync_to_async(make_instance)()
    subscribe = {"action": "subscribe", "topic": "local-instances"}
    staff = await connected_as(await sync_to_async(make_user)("stef", staff=True))
    await staff.send_json_to(subscribe)
    assert (await staff.receive_json_from(timeout=5))["type"] == "subscribed"
    snapshot = await staff.receive_json_from(timeout=5)
    assert snapshot["target"] == "local-instances-rows"
    assert "Stopped" in snapshot["html"]
    member = await connected_as(await sync_to_async(make_user)("ada"))
    await member.send_json_to(subscribe)
    assert (await member.receive_json_from(timeout=5))["type"] == "error"

    await sync_to_async(LocalInstance.objects.filter(pk=instance.pk).update)(
        state=LocalState.RUNNING, pid=4242
    )
    await sync_to_async(panel.publish)(instance.pk, ["[launcher] running"])
    pushed = await staff.receive_json_from(timeout=5)
    assert pushed["target"] == "local-instances-rows"
    assert "pid 4242" in pushed["html"]
    # The same state again: the list is not pushed twice.
    await sync_to_async(panel.publish)(instance.pk, ["more output"])
    assert await staff.receive_nothing(timeout=0.5)
    await staff.disconnect()
    await member.disconnect()
    await sync_to_async(console.forget)(instance.pk)
