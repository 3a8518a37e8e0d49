"""A new user's first run in Chromium: the empty dashboard's checklist leads through
server → workflow → template → run, each step ticking off as it is done, and the
relative times on the pages keep counting in the browser."""

from __future__ import annotations

import copy
import json
import re

import pytest

from tests.browser import follow_checklist_step, log_in, screenshot, text_changes
from tests.tasks.test_submit_browser import SLOW_GRAPH

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Ten steps of a second: running long enough to watch its elapsed time count.
GRAPH = copy.deepcopy(SLOW_GRAPH)
GRAPH["2"]["inputs"] |= {"seconds_per_step": 1.0, "nonce": 16}
# What comfyweb/timefmt.py (and static/js/times.js) say under a minute.
AGO = re.compile(r"^(just now|\d{1,2} s ago)$")
ELAPSED = re.compile(r"^\d{1,2}\.\d s$")


def done_steps(page) -> dict[str, bool]:
    return page.eval_on_selector_all(
        "#first-run-checklist [data-step]",
        "rows => Object.fromEntries(rows.map(r => [r.dataset.step, r.dataset.done === 'true']))",
    )


def test_checklist_ticks_off_each_step_and_relative_times_tick(page, own_serve, simulator_thread):
    serve = own_serve
    log_in(page, serve)
    assert done_steps(page) == {"server": False, "workflow": False, "template": False, "run": False}
    assert "0 of 4 done" in page.inner_text("#first-run-checklist")
    screenshot(page, "first-run-checklist-empty.png")

    follow_checklist_step(page, serve, "server")  # the admin's add-server form
    page.fill("input[name=name]", "render-1")
    page.fill("input[name=base_url]", f"http://127.0.0.1:{simulator_thread.port}")
    page.click("input[name=_save]")
    page.wait_for_selector("text=was added successfully")
    page.goto(serve.url)
    assert done_steps(page)["server"] is True

    follow_checklist_step(page, serve, "workflow")
    page.fill("input[name=name]", "First square")
    page.fill("textarea[name=graph_text]", json.dumps(GRAPH))
    page.click("button:text('Save')")
    page.wait_for_selector("h1:has-text('First square')")
    page.goto(serve.url)
    assert done_steps(page) == {"server": True, "workflow": True, "template": False, "run": False}
    screenshot(page, "first-run-checklist-half.png")

    follow_checklist_step(page, serve, "template")
    page.fill("input[name=name]", "First template")
    page.click("button:text('Save template')")
    page.wait_for_selector("button[value=submit]")

    # Generate, in the navigation, lists the template with its form.
    page.click("nav.mainnav a:text('Generate')")
    page.wait_for_selector("#generate-templates a:text('Open form')")
    screenshot(page, "generate.png")
    page.goto(serve.url)
    assert done_steps(page)["template"] is True

    follow_checklist_step(page, serve, "run")
    page.click("button[value=submit]")
    page.wait_for_url(re.compile(r"/tasks/"))
    created = "table.tasks time[data-tick='ago']"
    assert AGO.match(page.inner_text(created))
    text_changes(page, created)
    assert AGO.match(page.inner_text(created))

    page.click("table a[href*='/tasks/']:not([href$='/tasks/'])")
    running = "[id$='-progress'] time[data-tick='elapsed']"
    page.wait_for_selector(running, timeout=30_000)
    assert ELAPSED.match(page.inner_text(running))
    text_changes(page, running)
    assert ELAPSED.match(page.inner_text(running))
    screenshot(page, "relative-times-task.png")
    page.wait_for_selector("[id$='-status'] .badge.status-completed", timeout=60_000)
    # Ended: the elapsed time is fixed, shown like the running one was.
    elapsed = page.locator("[id$='-status'] div:has(dt:text('Elapsed')) dd time")
    assert ELAPSED.match(elapsed.inner_text())
    assert elapsed.get_attribute("data-tick") is None

    page.goto(serve.url)
    page.wait_for_selector("h1:text('Dashboard')")
    assert page.locator("#first-run-checklist").count() == 0
    screenshot(page, "first-run-dashboard-done.png")
    assert page.console_errors == []
