from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import psutil
import pytest

from comfyweb.management.commands.serve import first_free_port_run
from tests.serve_process import PASSWORD, free_port, launch, manage, start_serve

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


@pytest.fixture(scope="module")
def demo_serve(tmp_path_factory):
    """A first run with two demo servers from a chosen port, logging JSON as `make run`."""
    demo_port = first_free_port_run(free_port(), 2)
    data_dir = tmp_path_factory.mktemp("demo-serve") / "data"
    serve = start_serve(data_dir, "--demo", "2", "--demo-port", str(demo_port), LOG_FORMAT="json")
    serve.demo_port = demo_port
    try:
        # Polled from the web's start, as a load balancer would: the worker and the
        # monitor are usually not up yet, so /healthz answers 503 at first.
        serve.wait_for_line(r"started web")
        serve.wait_healthy()
        serve.password = serve.wait_for_line(PASSWORD).group(1)
        yield serve
    finally:
        serve.stop()


def _json_log_lines(serve) -> list[dict]:
    return [json.loads(line) for line in serve.stderr().splitlines() if line.startswith("{")]


def test_first_run_prints_the_password_in_a_plain_box_and_never_in_a_log_line(demo_serve):
    box = [line for line in demo_serve.lines if line.startswith(("+-", "| "))]
    assert box[0] == box[-1] == "+" + "-" * (len(box[0]) - 2) + "+"
    assert {len(line) for line in box} == {len(box[0])}
    assert any(f"password: {demo_serve.password}" in line for line in box)
    assert any(f"Log in at {demo_serve.url}" in line for line in box)
    assert _json_log_lines(demo_serve)  # the logs are JSON, as under `make run`...
    assert demo_serve.password not in demo_serve.stderr()  # ...and hold no password


def test_demo_servers_listen_on_the_ports_from_demo_port(demo_serve):
    ports = [demo_serve.demo_port, demo_serve.demo_port + 1]
    for port in ports:
        assert httpx.get(f"http://127.0.0.1:{port}/system_stats", timeout=5).status_code == 200
    registered = manage(
        demo_serve,
        "shell",
        "--verbosity=0",
        "-c",
        "from servers.models import Server; servers = Server.objects.filter(enabled=True); "
        "print(*servers.order_by('name').values_list('base_url', flat=True))",
    )
    assert registered.split() == [f"http://127.0.0.1:{port}" for port in ports]


def test_healthz_503s_while_serve_starts_are_logged_as_warming_up_not_as_errors(demo_serve):
    logged = [r for r in _json_log_lines(demo_serve) if "healthz" in r["message"]]
    assert not [r for r in logged if r["level"] == "ERROR"], logged
    warming_up = [r for r in logged if r["message"].startswith("healthz 503: warming up")]
    assert len(warming_up) == demo_serve.healthz_statuses.count(503)
    assert {r["level"] for r in warming_up} <= {"INFO"}
