"""The dashboard's fleet and queue panels change together, in a real Chromium (issue #10)."""

from __future__ import annotations

import copy

import httpx
import pytest

from tests.browser import log_in, register_server, screenshot
from tests.serve_process import manage
from tests.tasks.test_submit_browser import SLOW_GRAPH as SUBMIT_GRAPH

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# The submit test's graph with its own nonce: a graph run before is cached and
# would finish before the panels could show it.
SLOW_GRAPH = copy.deepcopy(SUBMIT_GRAPH)
SLOW_GRAPH["2"]["inputs"]["nonce"] = 7

# What the two panels say is on servers now: the fleet panel's slots in use plus
# "collecting outputs" (a prompt that ended gives its slot back before its
# outputs are fetched) summed over its servers, and the queue panel's
# dispatched + running.
READ_PANELS = """() => {
  const fleet = [...document.querySelectorAll("#fleet-panel [data-server]")]
    .map((row) => Number((row.textContent.match(/(\\d+) of \\d+ slots? in use/) || [0, 0])[1])
      + Number(row.querySelector("[data-collecting]")?.textContent || 0))
    .reduce((a, b) => a + b, 0);
  const count = (label) => {
    const cell = [...document.querySelectorAll("#queue-panel .count")]
      .find((c) => c.querySelector("span").textContent.trim() === label);
    return cell ? Number(cell.querySelector("strong").textContent) : 0;
  };
  return { fleet, queue: count("Dispatched") + count("Running") };
}"""

# Every state the page shows after a live swap (read once all swaps of one
# message are done), to find any moment the panels disagree.
RECORD = (
    "() => { window.seen = []; const read = " + READ_PANELS + ";"
    " document.addEventListener('live:swapped',"
    " () => setTimeout(() => window.seen.push(read()), 0)); }"
)


def test_fleet_and_queue_panels_agree_on_what_is_in_flight_while_a_task_runs(
    page, running_serve, simulator_thread
):
    log_in(page, running_serve)
    register_server(page, running_serve, "panels-1", simulator_thread.port)
    page.goto(f"{running_serve.url}servers/")
    page.wait_for_selector("#server-rows tr:has-text('panels-1')[data-health='healthy']")
    token = manage(running_serve, "create_api_token", running_serve.username, "--name", "panels")

    page.goto(running_serve.url)
    page.wait_for_selector("body[data-live='open']", timeout=15_000)
    before = page.evaluate(READ_PANELS)
    assert before["fleet"] == before["queue"]
    page.evaluate(RECORD)

    submitted = httpx.post(
        f"{running_serve.url}api/v1/tasks",
        json={"graph": SLOW_GRAPH},
        headers={"Authorization": f"Bearer {token.strip()}"},
        timeout=30,
    )
    assert submitted.status_code == 201, submitted.text
    page.wait_for_function(
        f"() => {{ const s = ({READ_PANELS})(); return s.fleet === {before['fleet'] + 1}"
        f" && s.queue === {before['queue'] + 1}; }}",
        timeout=30_000,
    )
    screenshot(page, "dashboard-task-in-flight.png")
    page.wait_for_function(
        f"() => {{ const s = ({READ_PANELS})(); return s.fleet === {before['fleet']}"
        f" && s.queue === {before['queue']}; }}",
        timeout=60_000,
    )
    seen = page.evaluate("window.seen")
    assert seen, "no live update reached the dashboard"
    assert [s for s in seen if s["fleet"] != s["queue"]] == []
    assert page.console_errors == []
