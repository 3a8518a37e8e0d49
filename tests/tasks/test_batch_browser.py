"""Batches as units in a real Chromium (issue 16 part 2): a batch of 5 on a simulated
server, its page reaching done live, a failed run retried from its task page and the
rest from the batch page, the batch run again, a batch canceled, the list grouped."""

from __future__ import annotations

import copy
import re

import pytest

from tests.browser import log_in, press, register_server, screenshot, upload_template
from tests.tasks.test_submit_browser import SLOW_GRAPH as SUBMIT_GRAPH

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Four visible steps a run; the nonce is a seed-like input, so each of the 5 runs
# draws its own and no run is served from the server's cache of the one before.
GRAPH = copy.deepcopy(SUBMIT_GRAPH)
GRAPH["2"]["inputs"] |= {"steps": 4, "nonce": 1}
BATCH_URL = re.compile(r"/tasks/batches/(\d+)/$")
DONE = 60_000
SUMMARY = "[id^='batch-'][id$='-summary']"


def wait_done(page, state: str) -> None:
    """Until the batch page's live summary says every task ended, the batch as `state`."""
    page.wait_for_selector(f"{SUMMARY}[data-done='true'][data-state='{state}']", timeout=DONE)


def click_and_confirm(page, button: str) -> None:
    page.once("dialog", lambda dialog: dialog.accept())
    press(page, button)


def test_a_batch_is_watched_retried_run_again_and_canceled_as_one_unit(
    page, running_serve, simulator_thread
):
    log_in(page, running_serve)
    register_server(page, running_serve, "batch-1", simulator_thread.port)
    page.goto(f"{running_serve.url}servers/")
    page.wait_for_selector("#server-rows tr:has-text('batch-1')[data-health='healthy']")

    upload_template(page, running_serve, "Batch squares", "Five squares", GRAPH)
    page.fill("input[name=count]", "5")
    page.click("button[value=submit]")
    page.wait_for_url(re.compile(r"/tasks/"))

    # The row's batch tag opens the batch page: it follows the batch live to done.
    page.click("table a.tag[href*='/tasks/batches/']")
    page.wait_for_url(BATCH_URL)
    first_batch = page.url
    page.evaluate("window.notReloaded = true")
    page.wait_for_selector("tr[id^='task-row-'] .badge.status-running", timeout=DONE)
    screenshot(page, "batch-running.png")
    wait_done(page, "completed")
    page.wait_for_function(
        "() => document.querySelectorAll('.contact-sheet img').length === 5", timeout=DONE
    )
    assert page.evaluate("window.notReloaded") is True
    assert "5 of 5 finished" in page.inner_text(SUMMARY).lower()
    screenshot(page, "batch-completed.png")

    # Run the whole batch again while the server fails every prompt: a new batch, all failed.
    simulator_thread.sim.config.failure_rate = 1.0
    press(page, "button:text('Run the batch again')")
    assert BATCH_URL.search(page.url)
    assert page.url != first_batch
    wait_done(page, "failed")
    assert "5 failed" in page.inner_text(SUMMARY).lower()
    screenshot(page, "batch-failed.png")

    # The server is well again: one failed task retried from its own page...
    simulator_thread.sim.config.failure_rate = 0.0
    failed_batch = page.url
    page.click("tr[id^='task-row-'] a[href*='/tasks/']")
    press(page, "form.task-retry button")
    page.wait_for_selector("[id$='-status'] .badge.status-completed", timeout=DONE)
    assert page.is_hidden("form.task-retry")  # it follows the live status
    screenshot(page, "task-retried.png")

    # ...and the other four from the batch page: the same batch ends completed.
    page.goto(failed_batch)
    press(page, "button:text('Retry 4 failed or canceled')")
    wait_done(page, "completed")
    assert "5 completed" in page.inner_text(SUMMARY).lower()
    screenshot(page, "batch-retried.png")

    # A batch run again and canceled at once: it ends canceled, whatever had finished.
    press(page, "button:text('Run again with new seeds')")
    assert BATCH_URL.search(page.url)
    click_and_confirm(page, "button:text('Cancel the batch')")
    wait_done(page, "canceled")
    assert "canceled" in page.inner_text(SUMMARY).lower()
    screenshot(page, "batch-canceled.png")

    page.goto(f"{running_serve.url}tasks/?group=batch")
    page.wait_for_selector("tr.batch-group")
    assert page.locator("tr.batch-group").count() >= 3
    screenshot(page, "tasks-grouped-by-batch.png")
    assert page.console_errors == []
