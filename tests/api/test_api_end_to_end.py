"""A script's whole job through the API alone, against a real `serve` and a simulated
ComfyUI: token from the shell, register the server, upload a workflow, submit two
batches at two priorities, poll until done, download every output."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.serve_process import manage

pytestmark = [pytest.mark.slow]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
GREEN_SQUARE = {
    "1": {
        "class_type": "EmptyImage",
        "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 65280},
    },
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "api"}},
}


def poll(check, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def follow(api: httpx.Client, task_id: int) -> list[tuple[str, dict]]:
    """Every (event, data) of the task's event stream, until the server ends it."""
    events, name = [], ""
    with api.stream("GET", f"tasks/{task_id}/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((name, json.loads(line.removeprefix("data: "))))
    return events


def test_a_script_with_a_token_runs_batches_and_downloads_every_png(own_serve, simulator_thread):
    token = manage(own_serve, "create_api_token", own_serve.username, "--name", "e2e").strip()
    api = httpx.Client(
        base_url=f"{own_serve.url}api/v1/",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )

    server = api.post(
        "servers",
        json={
            "name": "api-sim",
            "url": f"http://127.0.0.1:{simulator_thread.port}",
            "kind": "simulated",
        },
    )
    assert server.status_code == 201, server.text
    server_id = server.json()["id"]
    poll(
        lambda: api.get(f"servers/{server_id}").json()["status"] == "healthy",
        timeout=60,
        what="the monitor to find the server healthy",
    )

    workflow = api.post("workflows", json={"name": "Green square", "graph": GREEN_SQUARE})
    assert workflow.status_code == 201, workflow.text
    assert workflow.json()["node_classes"] == ["EmptyImage", "SaveImage"]

    batches = {}
    for priority in ("high", "low"):
        submitted = api.post(
            "tasks", json={"workflow": workflow.json()["id"], "count": 5, "priority": priority}
        )
        assert submitted.status_code == 201, submitted.text
        body = submitted.json()
        assert len(body["tasks"]) == 5
        assert {task["priority"] for task in body["tasks"]} == {priority}
        batches[priority] = body["batch"]

    # The last task queued runs last: follow it live, through daphne, to its end.
    events = follow(api, body["tasks"][-1]["id"])
    statuses = [data["status"] for name, data in events if name == "status"]
    assert statuses[0] == "pending"
    assert statuses[-1] == "completed"
    assert events[-1][1]["progress"]["percent"] == 100

    def all_done():
        tasks = []
        for batch in batches.values():
            page = api.get("tasks", params={"batch": batch, "page_size": 50}).json()
            tasks += page["items"]
        unfinished = [t for t in tasks if t["status"] not in {"completed", "failed", "canceled"}]
        return None if unfinished else tasks

    tasks = poll(all_done, timeout=180, what="all ten tasks to finish")
    assert [t["status"] for t in tasks] == ["completed"] * 10, [t["error"] for t in tasks]

    for task in tasks:
        assert task["server"]["name"] == "api-sim"
        assert task["progress"]["fraction"] == 1.0
        assert task["outputs"], f"task {task['id']} has no outputs"
        for output in task["outputs"]:
            file = api.get(own_serve.url.rstrip("/") + output["url"])
            assert file.status_code == 200
            assert file.headers["content-type"] == "image/png"
            assert file.content.startswith(PNG_SIGNATURE)
            assert len(file.content) == output["size"]
            assert (output["width"], output["height"]) == (64, 64)
