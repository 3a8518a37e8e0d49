"""A local instance started and stopped from its page in a real Chromium, against a
real `serve` (whose launcher owns the process): the status and the console follow
live, without a reload."""

from __future__ import annotations

import json
import sys

import pytest

from servers.local import procs
from tests.browser import log_in, screenshot
from tests.serve_process import PROJECT, free_port, manage
from tests.servers.local.conftest import comfyui_install

pytestmark = [pytest.mark.browser, pytest.mark.slow]

RECORD_SWAPS = (
    "window.swaps = [];"
    " document.addEventListener('live:swapped', (e) => window.swaps.push(e.detail.target));"
)


def shell(serve, code: str) -> str:
    return manage(serve, "shell", "--no-imports", "-c", code)


def test_staff_start_an_instance_and_watch_it_come_up_live(page, running_serve, tmp_path):
    fields = {
        "name": "browser-local",
        "comfyui_dir": str(comfyui_install(tmp_path / "ComfyUI")),
        "python": sys.executable,
        "port": free_port(),
        "environment": {"PYTHONPATH": str(PROJECT)},
    }
    made = shell(
        running_serve,
        "import json\nfrom servers.local.models import LocalInstance\n"
        f"print(LocalInstance.objects.create(**json.loads({json.dumps(json.dumps(fields))})).pk)",
    )
    pk = int(made)
    status, console = f"#local-{pk}-status", f"#local-{pk}-console"
    try:
        log_in(page, running_serve)
        page.add_init_script(RECORD_SWAPS)
        page.goto(f"{running_serve.url}servers/local/{pk}/")
        page.wait_for_selector(f"{status}[data-state='stopped']")
        page.wait_for_function(f"() => window.swaps.includes('local-{pk}-console')")  # snapshot

        with page.expect_navigation():  # the button posts, and comes back to the page
            page.click("button:text('Start')")
        page.evaluate("window.notReloaded = true")
        page.wait_for_selector(f"{status}[data-state='running']", timeout=60_000)
        page.wait_for_selector(f"{console}:has-text('stand-in ComfyUI --listen 127.0.0.1')")
        assert page.evaluate("window.notReloaded") is True
        assert "local-browser-local" in page.inner_text(status)  # its server
        screenshot(page, "local-instance-running.png")
        pid = int(page.inner_text(status).split("pid ")[1].split()[0])

        with page.expect_navigation():
            page.click("button:text('Stop')")
        page.wait_for_selector(f"{status}[data-state='stopped']:has-text('Last exit')")
        assert not procs.group_exists(pid)
        assert page.console_errors == []
    finally:
        shell(
            running_serve,
            "from servers.local.models import LocalInstance\n"
            "from servers.local.control import delete_instance\n"
            f"delete_instance(LocalInstance.objects.get(pk={pk}))",
        )
