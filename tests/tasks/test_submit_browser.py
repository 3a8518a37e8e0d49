"""A person's first run: workflow → template → submit → live progress → gallery."""

from __future__ import annotations

import re

import pytest

from tests.browser import log_in, register_server, screenshot, upload_template

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Ten visible steps of 0.3 s: long enough to watch the bar move.
SLOW_GRAPH = {
    "1": {
        "class_type": "EmptyImage",
        "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 65280},
    },
    "2": {
        "class_type": "SlowProgress",
        "inputs": {"image": ["1", 0], "steps": 10, "seconds_per_step": 0.3, "nonce": 0},
    },
    "3": {
        "class_type": "SaveImage",
        "inputs": {"images": ["2", 0], "filename_prefix": "comfyweb_browser"},
    },
}


def test_template_submit_shows_live_progress_and_lands_in_the_gallery(
    page, running_serve, simulator_thread
):
    log_in(page, running_serve)
    register_server(page, running_serve, "render-1", simulator_thread.port)
    page.goto(f"{running_serve.url}servers/")
    page.wait_for_selector("#server-rows tr:has-text('render-1')[data-health='healthy']")

    upload_template(page, running_serve, "Slow green square", "Green square", SLOW_GRAPH)
    screenshot(page, "template-submit-form.png")

    page.click("button[value=submit]")
    page.wait_for_url(re.compile(r"/tasks/"))
    page.click("table a[href*='/tasks/']:not([href$='/tasks/'])")
    page.wait_for_selector("[id$='-progress']")
    page.evaluate("window.notReloaded = true")

    # The bar moves while the node runs: some value strictly between 0 and 100.
    page.wait_for_function(
        "() => { const bar = document.querySelector(\"[id$='-progress'] progress\");"
        " return bar && bar.value > 0 && bar.value < 100; }",
        timeout=30_000,
    )
    screenshot(page, "task-running.png")
    page.wait_for_selector("[id$='-status'] .badge.status-completed", timeout=60_000)
    page.wait_for_selector("img[src*='/thumbnail/']", timeout=30_000)
    assert page.evaluate("window.notReloaded") is True
    screenshot(page, "task-completed.png")

    page.goto(f"{running_serve.url}gallery/")
    page.wait_for_selector(".gallery-item img")
    screenshot(page, "gallery.png")
    assert page.console_errors == []
