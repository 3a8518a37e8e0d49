"""A task list row whose task changes between the page's render and its live
subscription (or while its socket is down) is brought up to date once the socket is
subscribed: rows have no snapshot, so the page fetches their live cells
(static/js/live.js, data-refresh-on-subscribe)."""

from __future__ import annotations

import httpx
import pytest

from tests.browser import log_in
from tests.faults.deployment import wait_for
from tests.serve_process import manage
from tests.servers.simulator.helpers import slow_prompt

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_a_row_that_changed_before_the_socket_subscribed_catches_up(
    page, running_serve, simulator_thread
):
    serve = running_serve
    log_in(page, serve)
    token = manage(serve, "create_api_token", serve.username, "--name", "catch-up").strip()
    api = httpx.Client(base_url=serve.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    # Submitted with no server that can run it yet: the list shows it waiting.
    response = api.post("api/v1/tasks", json={"graph": slow_prompt(2, 0.05, nonce=515)})
    assert response.status_code == 201, response.text
    task_id = response.json()["tasks"][0]["id"]

    # The page's live socket is held unanswered, as on a slow network.
    held, asked = [], []

    def route(socket) -> None:
        if held:  # the second socket: through to the server
            socket.connect_to_server()
            return
        held.append(socket)
        socket.on_message(lambda message: asked.append(message))

    page.route_web_socket("**/ws/live/", route)
    page.goto(f"{serve.url}tasks/")
    page.wait_for_selector(f"#task-row-{task_id}-state .badge:not(.status-completed)")
    while not asked:  # Playwright hands over the page's messages while it waits
        page.wait_for_timeout(50)
    assert page.get_attribute("body", "data-live") == "connecting"  # not subscribed yet

    # Meanwhile a server comes and runs the task to the end.
    server = {"name": "catch-up-1", "url": f"http://127.0.0.1:{simulator_thread.port}"}
    assert api.post("api/v1/servers", json=server).status_code == 201
    wait_for(
        lambda: api.get(f"api/v1/tasks/{task_id}").json()["status"] == "completed",
        bound=60,
        what="the task completed",
    )
    assert not page.locator(f"#task-row-{task_id}-state .status-completed").count()

    # The socket drops and the page reconnects, this time through to the server.
    held[0].close()
    page.wait_for_selector("body[data-live='open']", timeout=30_000)
    page.wait_for_selector(f"#task-row-{task_id}-state .status-completed", timeout=15_000)
    page.wait_for_selector(f"#task-row-{task_id}-pictures img[src*='/thumbnail/']", timeout=15_000)
    assert page.console_errors == []
