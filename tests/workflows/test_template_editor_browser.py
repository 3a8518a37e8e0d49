"""The template editor in a real browser: node and input pickers, adding parameters,
then a seed sweep previewed run by run, all under the site's CSP."""

from __future__ import annotations

import json

import pytest

from tests.browser import log_in, screenshot
from tests.tasks.test_submit_browser import SLOW_GRAPH

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_parameters_are_added_by_picking_node_and_input_and_a_sweep_previews_each_run(
    page, running_serve
):
    log_in(page, running_serve)
    page.goto(f"{running_serve.url}workflows/new/")
    page.fill("input[name=name]", "Editor pickers")
    page.fill("textarea[name=graph_text]", json.dumps(SLOW_GRAPH))
    page.click("button:text('Save')")
    page.wait_for_selector("h1:has-text('Editor pickers')")
    page.click("a:text('New template')")
    page.fill("input[name=name]", "Picked")

    rows = page.locator("table.params tbody tr.param-row")
    suggested = rows.count() - 1
    last = rows.nth(suggested)
    assert last.locator("input[name$='-name']").input_value() == ""
    # Picking node 2 leaves only its literal inputs (its image is a link).
    last.locator("select.param-node").select_option("2")
    inputs = last.locator("select.param-input option").all_inner_texts()
    assert inputs == ["— input —", "nonce", "seconds_per_step", "steps"]
    last.locator("select.param-input").select_option("seconds_per_step")
    assert last.locator("input[name$='-name']").input_value() == "seconds_per_step"
    last.locator("select[name$='-type']").select_option("float")

    # Another one: the button copies an empty row; picking an input picks its node.
    page.click("#add-parameter")
    assert rows.count() == suggested + 2
    added = rows.nth(suggested + 1)
    added.locator("select.param-input").select_option("filename_prefix")
    assert added.locator("select.param-node").input_value() == "3"
    added.locator("input[name$='-name']").fill("prefix")
    added.locator("select[name$='-type']").select_option("text")
    screenshot(page, "template-editor.png")
    page.click("button:text('Save template')")

    page.wait_for_selector("button[value=submit]")
    assert page.locator("[name=p_seconds_per_step]").count() == 1
    assert page.locator("[name=p_prefix]").count() == 1
    page.fill("input[name=p_seconds_per_step]", "0.1")  # added without a default
    page.check("input[name=mode][value=sweep]")
    page.fill("input[name=count]", "3")
    page.fill("input[name=sweep_start]", "42")
    page.click("button[value=preview]")
    page.wait_for_selector("#preview table.runs")
    cells = page.locator("#preview table.runs tbody tr td:nth-child(2)").all_inner_texts()
    assert cells == ["42", "43", "44"]
    screenshot(page, "template-sweep-preview.png")
    assert page.console_errors == []
