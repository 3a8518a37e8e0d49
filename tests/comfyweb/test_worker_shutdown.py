"""The worker cluster stops cleanly when its whole process group gets SIGTERM.

That is what systemd sends by default (KillMode=control-group), and what a
container runtime or `kill -TERM -<pgid>` does. django-q2's own `qcluster`
deadlocked there until SIGKILL (see comfyweb/management/commands/qcluster.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from comfyweb import embedded_redis

ROOT = Path(__file__).resolve().parents[2]
# Bounds on waiting, not expected durations: the cluster starts in about a
# second and stops in about one here.
START_BOUND = 60.0
STOP_BOUND = 60.0

pytestmark = pytest.mark.slow


def wait_for_line(log: Path, text: str, process: subprocess.Popen, bound: float) -> None:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        if process.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError(f"no {text!r} in the worker's log:\n{log.read_text(errors='replace')}")


@pytest.fixture
def worker_environment(tmp_path):
    """SQLite and a private embedded Redis in `tmp_path`: no job of another test is taken."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "COMFYWEB_DATA_DIR": str(tmp_path),
        "SECRET_KEY": "worker-shutdown-test",
        "LOG_FORMAT": "text",
        "WORKER_PROCESSES": "2",
    }
    redis = embedded_redis.start(tmp_path / "redis.sock")
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v0"], env=env, cwd=ROOT, check=True
        )
        yield env
    finally:
        redis.terminate()
        redis.wait(timeout=10)


def test_sigterm_to_the_whole_worker_group_stops_every_process(worker_environment, tmp_path):
    log = tmp_path / "worker.log"
    with log.open("wb") as output:
        leader = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            env=worker_environment,
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    group = leader.pid  # its own session: the group id is its pid
    try:
        wait_for_line(log, "running.", leader, START_BOUND)
        members = [p for p in psutil.process_iter(["pid"]) if _group_of(p.pid) == group]
        # The qcluster process is the sentinel (no leader above it): it forked the
        # pusher, the monitor and the two workers itself.
        assert len(members) >= 5
        assert all(p.ppid() == leader.pid for p in members if p.pid != leader.pid)

        os.killpg(group, signal.SIGTERM)
        assert leader.wait(timeout=STOP_BOUND) == 0
        assert "has stopped." in log.read_text()
        still = [p.pid for p in members if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert not still, f"left running after SIGTERM: {still}"
    finally:
        if leader.poll() is None:
            os.killpg(group, signal.SIGKILL)
            leader.wait()


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None
