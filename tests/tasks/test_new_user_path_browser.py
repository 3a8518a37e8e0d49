"""The whole path a new user takes, in Chromium (issue 16, "done when"): an empty
dashboard's checklist → a server → a workflow → a template → a batch of 5 whose
expected finish counts down → the pictures in the viewer, arrowed through → a
failed run retried. Screenshots of each step go to test-artifacts/new-user-*.png.
"""

from __future__ import annotations

import copy
import json
import re

import pytest

from tests.browser import follow_checklist_step, log_in, press, screenshot, text_changes
from tests.tasks.test_submit_browser import SLOW_GRAPH

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Forty steps of 0.1 s a run: a batch of 5 on one server runs long enough to watch
# its expected finish count down.
GRAPH = copy.deepcopy(SLOW_GRAPH)
GRAPH["2"]["inputs"] |= {"steps": 40, "seconds_per_step": 0.1, "nonce": 1}
BATCH_URL = re.compile(r"/tasks/batches/(\d+)/$")
TASK_URL = re.compile(r"/tasks/(\d+)/$")
DONE = 90_000


def test_a_new_user_goes_from_an_empty_dashboard_to_a_retried_batch(
    page, own_serve, simulator_thread
):
    serve = own_serve
    log_in(page, serve)
    assert "0 of 4 done" in page.inner_text("#first-run-checklist")
    screenshot(page, "new-user-1-empty-dashboard.png")

    follow_checklist_step(page, serve, "server")  # the admin's add-server form
    page.fill("input[name=name]", "render-1")
    page.fill("input[name=base_url]", f"http://127.0.0.1:{simulator_thread.port}")
    page.click("input[name=_save]")
    page.wait_for_selector("text=was added successfully")
    page.goto(f"{serve.url}servers/")
    page.wait_for_selector("#server-rows tr:has-text('render-1')[data-health='healthy']")

    follow_checklist_step(page, serve, "workflow")
    page.fill("input[name=name]", "Squares")
    page.fill("textarea[name=graph_text]", json.dumps(GRAPH))
    page.click("button:text('Save')")
    page.wait_for_selector("h1:has-text('Squares')")

    follow_checklist_step(page, serve, "template")
    page.fill("input[name=name]", "Square")
    page.click("button:text('Save template')")
    page.wait_for_selector("button[value=submit]")
    page.goto(serve.url)
    assert "3 of 4 done" in page.inner_text("#first-run-checklist")
    screenshot(page, "new-user-2-checklist.png")

    # A batch of 5 from the checklist's last step; its page shows when it should end.
    follow_checklist_step(page, serve, "run")
    page.fill("input[name=count]", "5")
    page.click("button[value=submit]")
    page.wait_for_url(re.compile(r"/tasks/"))
    # The list fetches its rows' expected times once shown.
    page.wait_for_selector("table.tasks [id$='-eta'] .queue-position", timeout=DONE)
    page.click("table a.tag[href*='/tasks/batches/']")
    page.wait_for_url(BATCH_URL)
    batch_id = BATCH_URL.search(page.url).group(1)
    countdown = f"#batch-{batch_id}-eta time[data-tick='until']"
    page.wait_for_selector(countdown, timeout=DONE)
    text_changes(page, countdown)  # counting down in the browser
    assert page.locator("[id^='task-'][id$='-eta'] .queue-position").count() >= 1
    screenshot(page, "new-user-3-batch-eta.png")
    page.wait_for_selector(
        f"#batch-{batch_id}-summary[data-done='true'][data-state='completed']", timeout=DONE
    )
    assert page.locator(f"#batch-{batch_id}-eta").count() == 0  # done: nothing to expect
    screenshot(page, "new-user-4-batch-done.png")

    # The pictures in the viewer: arrows move through them.
    page.goto(f"{serve.url}gallery/")
    tiles = page.locator(".gallery-item[data-full]")
    page.wait_for_function(
        "() => document.querySelectorAll('.gallery-item[data-full]').length >= 5"
    )
    count = tiles.count()
    tiles.first.locator("a.open").click()
    page.wait_for_selector("dialog#viewer[open]")
    assert page.text_content("#viewer-position") == f"1 of {count}"
    page.keyboard.press("ArrowRight")
    assert page.text_content("#viewer-position") == f"2 of {count}"
    page.wait_for_function("() => document.getElementById('viewer-image').complete")
    screenshot(page, "new-user-5-viewer.png")
    page.keyboard.press("Escape")
    page.wait_for_selector("dialog#viewer[open]", state="detached")

    # A run on a failing server fails; Retry runs it again once the server is well.
    simulator_thread.sim.config.failure_rate = 1.0
    page.goto(f"{serve.url}tasks/batches/{batch_id}/")
    page.click("tr[id^='task-row-'] a[href*='/tasks/']")
    # New seeds: the same ones would be served from the server's cache, never failing.
    press(page, "form.task-run-again-new-seeds button")
    assert TASK_URL.search(page.url)
    page.wait_for_selector("[id$='-status'] .badge.status-failed", timeout=DONE)
    screenshot(page, "new-user-6-failed.png")
    simulator_thread.sim.config.failure_rate = 0.0
    press(page, "form.task-retry button")
    page.wait_for_selector("[id$='-status'] .badge.status-completed", timeout=DONE)
    screenshot(page, "new-user-7-retried.png")

    page.goto(serve.url)
    assert page.locator("#first-run-checklist").count() == 0  # every step done
    assert page.console_errors == []
