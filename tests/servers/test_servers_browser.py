"""The Servers page follows a server going down and coming back, without a reload."""

from __future__ import annotations

import pytest

from tests.browser import log_in, register_server, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_servers_page_shows_a_server_going_down_and_coming_back_live(
    page, running_serve, simulator_thread
):
    simulator = simulator_thread
    log_in(page, running_serve)
    register_server(page, running_serve, "lab-1", simulator.port)

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
