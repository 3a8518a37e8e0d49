"""Debian's Chromium driven by Playwright, set up for this machine's closed network."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
# Only loopback is reachable: Chromium's background traffic must be off.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@contextmanager
def open_page() -> Iterator:
    """A page whose `console_errors` lists every console error it logged."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
        )
        page = chromium.new_page(viewport={"width": 1280, "height": 800})
        page.console_errors = []
        page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
        try:
            yield page
        finally:
            chromium.close()


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=path, full_page=True)
    return path


def log_in(page, serve) -> None:
    """Sign in through the login form with the admin `serve` printed on its first run."""
    page.goto(f"{serve.url}login/")
    page.fill("input[name=username]", serve.username)
    page.fill("input[name=password]", serve.password)
    page.click("button[type=submit]")
    page.wait_for_selector("h1:text('Dashboard')")


def register_server(page, serve, name: str, port: int) -> None:
    """Add a ComfyUI server the way an admin does, through the admin form."""
    page.goto(f"{serve.url}admin/servers/server/add/")
    page.fill("input[name=name]", name)
    page.fill("input[name=base_url]", f"http://127.0.0.1:{port}")
    page.click("input[name=_save]")
    page.wait_for_selector("text=was added successfully")


def upload_template(page, serve, workflow: str, template: str, graph: dict) -> None:
    """Upload `graph` as a workflow and make a template of it with no parameters, as a
    person does on the pages; ends on the template's submit form."""
    page.goto(f"{serve.url}workflows/new/")
    page.fill("input[name=name]", workflow)
    page.fill("textarea[name=graph_text]", json.dumps(graph))
    page.click("button:text('Save')")
    page.wait_for_selector(f"h1:has-text('{workflow}')")
    page.click("a:text('New template')")
    page.fill("input[name=name]", template)
    page.click("button:text('Save template')")
    page.wait_for_selector("button[value=submit]")


def follow_checklist_step(page, serve, step: str) -> None:
    """Open the dashboard and follow its first-run checklist's link for `step`."""
    page.goto(serve.url)
    page.click(f"#first-run-checklist [data-step='{step}'] a")


def text_changes(page, selector: str) -> None:
    """Until the browser rewrites the element's text (the ticker, not a reload)."""
    before = page.inner_text(selector)
    page.wait_for_function(
        "([selector, before]) => document.querySelector(selector)?.textContent !== before",
        arg=[selector, before],
        timeout=15_000,
    )


def press(page, button: str) -> None:
    """Click a form's button and wait for the page it leads to."""
    with page.expect_navigation():
        page.click(button)
