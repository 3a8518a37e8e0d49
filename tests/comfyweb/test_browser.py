"""A person's first visit, in a real headless Chromium driven by Playwright."""

from __future__ import annotations

import pytest

from tests.browser import screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]


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
    # database, redis, worker, monitor
    assert page.locator("#health-panel [data-component]").count() == 5
    nav = page.locator("nav.mainnav a").all_inner_texts()
    assert nav[0] == "Dashboard"
    assert "Admin" in nav

    screenshot(page, "dashboard.png")
    assert page.console_errors == []


def test_admin_site_renders_under_the_content_security_policy(page, running_serve):
    page.goto(f"{running_serve.url}admin/login/")
    page.fill("input[name=username]", running_serve.username)
    page.fill("input[name=password]", running_serve.password)
    page.click("input[type=submit]")
    page.wait_for_selector("text=Site administration")
    page.goto(f"{running_serve.url}admin/teams/team/add/")
    page.wait_for_selector("input[name=name]")
    screenshot(page, "admin-team-add.png")
    assert page.console_errors == []
