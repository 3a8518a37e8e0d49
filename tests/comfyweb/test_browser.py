"""A person's first visit, in a real headless Chromium driven by Playwright."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
# This machine has no network but loopback: background traffic must be off.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture
def page():
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's chromium package (see .ci/run)")
        pytest.skip("Debian's chromium package is not installed: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
        )
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.console_errors = []
        page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
        yield page
        browser.close()


def test_admin_logs_in_and_sees_the_dashboard_update_live(page, running_serve):
    page.goto(running_serve.url)
    assert page.url.endswith("/login/?next=/")
    page.fill("input[name=username]", running_serve.username)
    page.fill("input[name=password]", running_serve.password)
    page.click("button[type=submit]")

    page.wait_for_selector("h1:text('Dashboard')")
    page.wait_for_selector("body[data-live='open']", timeout=15_000)
    # The socket's snapshot replaced the panel: still the same, all healthy.
    page.wait_for_selector("#health-panel .badge.ok")
    assert page.locator("#health-panel [data-component]").count() == 3
    nav = page.locator("nav.mainnav a").all_inner_texts()
    assert nav[0] == "Dashboard"
    assert "Admin" in nav

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "dashboard.png", full_page=True)
    assert page.console_errors == []


def test_admin_site_renders_under_the_content_security_policy(page, running_serve):
    page.goto(f"{running_serve.url}admin/login/")
    page.fill("input[name=username]", running_serve.username)
    page.fill("input[name=password]", running_serve.password)
    page.click("input[type=submit]")
    page.wait_for_selector("text=Site administration")
    page.goto(f"{running_serve.url}admin/tasks/team/add/")
    page.wait_for_selector("input[name=name]")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "admin-team-add.png", full_page=True)
    assert page.console_errors == []
