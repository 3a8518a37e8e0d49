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
