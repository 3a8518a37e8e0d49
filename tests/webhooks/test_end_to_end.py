"""A webhook through the real thing: `serve` (worker, monitor, web) with a simulated
ComfyUI runs a task to the end, and its worker delivers `task.completed` to a
receiver on loopback, signed with the secret the API gave once."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.serve_process import launch, manage
from tests.webhooks.receiver import verify

pytestmark = [pytest.mark.slow]

GREEN_SQUARE = {
    "1": {
        "class_type": "EmptyImage",
        "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 65280},
    },
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "hook"}},
}


@pytest.fixture
def serve_allowing_loopback(tmp_path):
    serve = launch(tmp_path / "data", "--demo", "1", COMFYWEB_WEBHOOKS_ALLOW_PRIVATE="true")
    yield serve
    serve.stop()


def test_a_simulated_task_that_completes_is_delivered_signed(serve_allowing_loopback, receiver):
    serve = serve_allowing_loopback
    token = manage(serve, "create_api_token", serve.username, "--name", "hooks").strip()
    api = httpx.Client(
        base_url=f"{serve.url}api/v1/", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    endpoint = api.post("webhooks", json={"url": receiver.url(), "events": ["task.completed"]})
    assert endpoint.status_code == 201, endpoint.text
    secret = endpoint.json()["secret"]

    submitted = api.post("tasks", json={"graph": GREEN_SQUARE})
    assert submitted.status_code == 201, submitted.text
    task_id = submitted.json()["tasks"][0]["id"]

    [got] = receiver.wait_for(1, timeout=120)
    assert verify(secret, got.headers, got.body)
    data = got.payload["data"]
    assert got.payload["type"] == "task.completed"
    assert data["id"] == task_id
    assert len(data["outputs"]) == 1
    output = api.get(data["outputs"][0]["file"].removeprefix("/api/v1/"))
    assert output.content.startswith(b"\x89PNG")

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        [logged] = api.get(f"webhooks/{endpoint.json()['id']}/deliveries").json()
        if logged["state"] == "succeeded":
            break
        time.sleep(0.2)
    assert logged["state"] == "succeeded"
    assert logged["webhook_id"] == got.webhook_id
    assert logged["attempt_log"][0]["status_code"] == 200
