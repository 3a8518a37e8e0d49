"""The dashboard's health panel lists every monitor and worker cluster (issue 17)."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.browser import log_in, screenshot
from tests.serve_process import PROJECT, serve_env

pytestmark = [pytest.mark.browser, pytest.mark.slow]

MONITORS = "#health-panel [data-component=monitor] [data-monitor]"


def monitors_in_healthz(page, serve) -> list[str]:
    body = page.request.get(f"{serve.url}healthz").json()
    return [m["id"] for m in body["components"]["monitor"].get("monitors", [])]


def wait_for_monitors(page, serve, count: int, timeout: float = 60) -> list[str]:
    """Poll /healthz (signed in: it lists the monitors) until `count` beat."""
    deadline = time.monotonic() + timeout
    while len(ids := monitors_in_healthz(page, serve)) != count:
        if time.monotonic() > deadline:
            raise AssertionError(f"healthz kept listing {ids}, not {count} monitor(s)")
        page.wait_for_timeout(200)
    return ids


def test_a_second_monitor_appears_in_the_panel_and_leaves_it_when_stopped(page, running_serve):
    log_in(page, running_serve)
    wait_for_monitors(page, running_serve, 1)
    page.reload()
    page.wait_for_selector("#health-panel [data-component=worker] [data-cluster]")
    assert page.locator(MONITORS).count() == 1

    second = subprocess.Popen(
        [sys.executable, "manage.py", "monitor"],
        cwd=PROJECT,
        env=serve_env(running_serve.data_dir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        ids = wait_for_monitors(page, running_serve, 2)
        page.reload()
        page.wait_for_selector(f"{MONITORS} >> nth=1")
        assert sorted(
            page.locator(MONITORS).evaluate_all("els => els.map(e => e.dataset.monitor)")
        ) == sorted(ids)
        # Each says how many servers it leases (they split the fleet: issue 17).
        assert re.search(r"leases \d+", page.locator(MONITORS).first.inner_text())
        screenshot(page, "health-two-monitors.png")
        # daphne answers the scrape from loopback with both monitors' heartbeats.
        scrape = httpx.get(f"{running_serve.url}metrics", timeout=10)
        assert scrape.status_code == 200
        samples = {
            (s.name, s.labels.get("monitor")): s.value
            for family in text_string_to_metric_families(scrape.text)
            for s in family.samples
        }
        assert samples[("comfyweb_monitors_alive", None)] == 2
        assert {("comfyweb_monitor_servers", monitor) in samples for monitor in ids} == {True}
    finally:
        second.terminate()
        second.wait(timeout=30)
    # A monitor that stops cleanly takes its beat with it: no wait for it to expire.
    assert len(monitors_in_healthz(page, running_serve)) == 1
    page.reload()
    page.wait_for_selector("#health-panel .badge.ok")
    assert page.locator(MONITORS).count() == 1
    assert page.console_errors == []
