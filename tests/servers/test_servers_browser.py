"""The Servers page follows a server going down and coming back, without a reload."""

from __future__ import annotations

import pytest

from tests.browser import screenshot
from tests.serve_process import free_port
from tests.simulator_thread import SimulatorThread

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def simulator(tmp_path):
    sim = SimulatorThread(free_port(), tmp_path / "comfyui")
    sim.start()
    yield sim
    sim.close()


def _admin_login(page, serve) -> None:
    page.goto(f"{serve.url}admin/login/")
    page.fill("input[name=username]", serve.username)
    page.fill("input[name=password]", serve.password)
    page.click("input[type=submit]")
    page.wait_for_selector("text=Site administration")


def test_servers_page_shows_a_server_going_down_and_coming_back_live(
    page, running_serve, simulator
):
    _admin_login(page, running_serve)
    # Register the server the way an admin does, through the admin form.
    page.goto(f"{running_serve.url}admin/servers/server/add/")
    page.fill("input[name=name]", "lab-1")
    page.fill("input[name=base_url]", f"http://127.0.0.1:{simulator.port}")
    page.click("input[name=_save]")
    page.wait_for_selector("text=was added successfully")

    page.goto(f"{running_serve.url}servers/")
    page.evaluate("window.notReloaded = true")
    row = "#server-rows tr:has-text('lab-1')"
    page.wait_for_selector(f"{row}[data-health='healthy']", timeout=60_000)

    simulator.stop()
    page.wait_for_selector(f"{row}[data-health='unhealthy']", timeout=60_000)
    screenshot(page, "servers-down.png")
    assert "never" not in page.inner_text(row)  # the last failure is shown

    simulator.start()
    page.wait_for_selector(f"{row}[data-health='healthy']", timeout=90_000)
    screenshot(page, "servers-recovered.png")
    assert page.evaluate("window.notReloaded") is True
    assert page.console_errors == []
