from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import psutil
import pytest

from tests.serve_process import launch, start_serve

pytestmark = pytest.mark.slow


@contextmanager
def _login(serve, username: str, password: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=serve.url, timeout=10) as client:
        form = client.get("/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
        response = client.post(
            "/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": token},
        )
        assert response.status_code == 302, response.text[:500]
        yield client


def test_serve_becomes_healthy_and_the_printed_admin_can_log_in(running_serve):
    health = httpx.get(f"{running_serve.url}healthz", timeout=5).json()
    assert health == {
        "status": "ok",
        "components": {
            "database": {"ok": True},
            "redis": {"ok": True},
            "worker": {"ok": True},
            "monitor": {"ok": True},
            "launcher": {"ok": True},
        },
    }
    with _login(running_serve, running_serve.username, running_serve.password) as client:
        dashboard = client.get("/")
        assert dashboard.status_code == 200
        assert "System health" in dashboard.text
        assert client.get("/admin/").status_code == 200


def test_credentials_are_printed_once(running_serve):
    printed = [line for line in running_serve.lines if "password:" in line]
    assert len(printed) == 1


def test_static_files_are_served_without_a_cdn(running_serve):
    css = httpx.get(f"{running_serve.url}static/css/comfyweb.css", timeout=5)
    assert css.status_code == 200
    assert "text/css" in css.headers["content-type"]


def test_a_killed_worker_is_restarted_and_leaves_no_orphans(own_serve):
    worker = own_serve.child_pid("worker")
    old_family = [psutil.Process(worker), *psutil.Process(worker).children(recursive=True)]
    assert len(old_family) > 1  # qcluster forks a sentinel and its workers
    old_family[0].kill()
    own_serve.wait_for_line(r"worker exited with code -9; restarting in")
    own_serve.wait_for_line(rf"started worker \(pid (?!{worker}\b)\d+\)")
    _, leftovers = psutil.wait_procs(old_family, timeout=5)
    assert not leftovers, [p.cmdline() for p in leftovers]
    own_serve.wait_healthy()


def test_sigterm_stops_serve_and_every_child_within_ten_seconds(own_serve):
    family = [psutil.Process(own_serve.process.pid)]
    family += family[0].children(recursive=True)
    names = {p.pid: " ".join(p.cmdline()) for p in family}
    assert any("redis-server" in cmd for cmd in names.values())
    assert any("daphne" in cmd for cmd in names.values())
    assert any("qcluster" in cmd for cmd in names.values())
    assert any("manage.py monitor" in cmd for cmd in names.values())

    started = time.monotonic()
    own_serve.process.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(family, timeout=10)
    assert not alive, [names[p.pid] for p in alive]
    assert time.monotonic() - started < 10
    assert own_serve.process.wait(timeout=1) == 0


def test_second_run_on_the_same_data_keeps_the_admin_and_prints_no_password(tmp_path):
    first = launch(tmp_path / "data")
    first.stop()
    second = start_serve(tmp_path / "data")
    try:
        second.wait_for_line("ComfyWeb is running at")
        assert not [line for line in second.lines if "password:" in line]
        second.wait_healthy()
        with _login(second, first.username, first.password) as client:
            assert client.get("/").status_code == 200
    finally:
        second.stop()
