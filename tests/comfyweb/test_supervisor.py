from __future__ import annotations

import sys
import time

import psutil

from comfyweb.supervisor import ChildSpec, Supervisor

PY = sys.executable


def test_crashed_child_is_restarted_with_growing_delays():
    lines: list[str] = []
    supervisor = Supervisor(poll_interval=0.01, announce=lines.append)
    child = supervisor.start(ChildSpec("crasher", [PY, "-c", "raise SystemExit(3)"]))
    child.backoff.base, child.backoff.jitter = 0.05, 0.0
    deadline = time.monotonic() + 10
    while child.restarts < 3 and time.monotonic() < deadline:
        supervisor._watch_once()
        time.sleep(0.01)
    supervisor.stop_all()
    exits = [line for line in lines if "exited with code 3" in line]
    assert [line.rsplit("in ", 1)[1] for line in exits[:3]] == ["0.1s", "0.1s", "0.2s"]
    assert child.restarts == 3


def test_child_that_ignores_sigterm_is_killed_with_its_process_group():
    ignore_term = (
        "import signal, subprocess, sys, time;"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        "time.sleep(60)"
    )
    supervisor = Supervisor(stop_timeout=0.5, announce=lambda line: None)
    child = supervisor.start(ChildSpec("stubborn", [PY, "-c", ignore_term]))
    time.sleep(0.5)  # let it fork its grandchild
    family = [psutil.Process(child.pid), *psutil.Process(child.pid).children(recursive=True)]
    assert len(family) == 2

    started = time.monotonic()
    supervisor.stop_all()
    assert time.monotonic() - started < 5
    _, alive = psutil.wait_procs(family, timeout=2)
    assert not alive


def _records_sigterm(name: str, log) -> list[str]:
    script = (
        "import signal, sys, time\n"
        "def stop(*_):\n"
        f"    open({str(log)!r}, 'a').write({name!r} + '\\n')\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "time.sleep(60)\n"
    )
    return [PY, "-c", script]


def test_infrastructure_is_stopped_after_the_applications(tmp_path):
    log = tmp_path / "stops.log"
    supervisor = Supervisor(announce=lambda line: None)
    supervisor.start(ChildSpec("redis", _records_sigterm("redis", log), infrastructure=True))
    supervisor.start(ChildSpec("web", _records_sigterm("web", log)))
    supervisor.start(ChildSpec("worker", _records_sigterm("worker", log)))
    time.sleep(0.5)  # let the children install their handlers
    supervisor.stop_all()
    stopped = log.read_text().split()
    assert sorted(stopped[:2]) == ["web", "worker"]
    assert stopped[2] == "redis"
