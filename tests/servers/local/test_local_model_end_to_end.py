"""Issue #14's whole path, from the dashboard alone, in a real Chromium against a real
`serve`: staff add a local ComfyUI install (the simulator's stand-in install, started
by serve's launcher exactly as ComfyUI's main.py would be), start it and watch its
console, download a model into the library from a host that wants a token, and run
a workflow that needs that model — which only that instance has, so it runs there.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import time
import uuid

import pytest

from servers.local import procs
from tests.browser import log_in, screenshot
from tests.factories import trivial_graph
from tests.range_server import Content, Faults, MiB, RangeServer
from tests.serve_process import PROJECT, free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TOKEN = "hf_e2e-token"
STAND_IN = PROJECT / "servers" / "simulator" / "comfyui"


def test_a_local_install_runs_a_model_downloaded_with_a_token(page, own_serve, tmp_path):
    serve = own_serve
    model = f"e2e-{uuid.uuid4().hex[:8]}.safetensors"
    port = free_port()
    pid = None
    log_in(page, serve)
    try:
        # Add the install from the Servers page.
        page.goto(f"{serve.url}servers/")
        page.click("a:text('Add local instance')")
        page.fill("input[name=name]", "studio")
        page.fill("input[name=comfyui_dir]", str(STAND_IN))
        page.fill("input[name=python]", sys.executable)
        page.fill("input[name=port]", str(port))
        page.fill("input[name=args]", f"--time-scale 0.1 --data-dir {tmp_path / 'comfyui-data'}")
        page.click("button:text('Add')")
        page.wait_for_selector("h1:has-text('studio')")
        pk = int(re.search(r"/servers/local/(\d+)/", page.url).group(1))
        status, console = f"#local-{pk}-status", f"#local-{pk}-console"

        # Start it; its state and console follow live.
        with page.expect_navigation():
            page.click("button:text('Start')")
        page.wait_for_selector(f"{status}[data-state='running']", timeout=60_000)
        page.wait_for_selector(f"{console}:has-text('comfyui-sim 1 http://127.0.0.1:{port}')")
        page.wait_for_selector(f"{console}:has-text('--extra-model-paths-config')")
        pid = int(page.inner_text(status).split("pid ")[1].split()[0])
        screenshot(page, "local-instance-console.png")

        # Download a model into the library; the host refuses it without the token.
        with RangeServer(Content(4 * MiB, seed=14), faults=Faults(token=TOKEN)) as host:
            page.goto(f"{serve.url}library/downloads/")
            page.fill("#download-add input[name=url]", host.url(model))
            page.select_option("#download-add select[name=folder]", "checkpoints")
            page.fill("#download-add textarea[name=headers]", f"Authorization: Bearer {TOKEN}")
            page.click("#download-add button[type=submit]")
            row = f"#downloads-panel tr:has-text('{model}')"
            page.wait_for_selector(f"{row}[data-state='completed']", timeout=60_000)
            assert {r.status for r in host.requests if r.method == "GET"} <= {200, 206}
        # A run is accepted once a server's model list has the model: the monitor
        # refetches the list after the download, at its next tick.
        page.goto(f"{serve.url}servers/local/{pk}/")
        server_page = page.get_attribute(f"{status} a:text('local-studio')", "href")
        until_listed(page, f"{serve.url.rstrip('/')}{server_page}", model)

        # A workflow that needs the model runs on the instance that has it (tasks wait
        # for a server whose model list has every model their graph names).
        page.goto(f"{serve.url}workflows/new/")
        page.fill("input[name=name]", "Needs the downloaded model")
        graph = trivial_graph(seed=1)
        graph["1"]["inputs"]["ckpt_name"] = model
        page.fill("textarea[name=graph_text]", json.dumps(graph))
        page.click("button:text('Save')")
        page.wait_for_selector("h1:has-text('Needs the downloaded model')")
        page.click("button:text('Run v1')")
        page.wait_for_url(re.compile(r"/tasks/"))
        page.click("table a[href*='/tasks/']:not([href$='/tasks/'])")
        page.wait_for_selector("[id$='-status'] .badge.status-completed", timeout=60_000)
        assert "local-studio" in page.inner_text("dl")
        screenshot(page, "local-instance-task.png")
        # Routed there because its model list, refreshed after the download, has it.
        page.goto(f"{serve.url}servers/local/{pk}/")
        page.click(f"{status} a:text('local-studio')")
        page.wait_for_selector(f"li:text-is('{model}')", state="attached")  # folded list
        assert page.console_errors == []
    finally:
        if pid is not None and procs.group_exists(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


def until_listed(page, server_page: str, model: str) -> None:
    """Reload the server's page until its (folded) model list names `model`."""
    deadline = time.monotonic() + 60  # a bound on waiting, not an expected duration
    while True:
        page.goto(server_page)
        if page.locator(f"li:text-is('{model}')").count():
            return
        assert time.monotonic() < deadline, f"{model} never reached the server's model list"
        page.wait_for_timeout(250)
