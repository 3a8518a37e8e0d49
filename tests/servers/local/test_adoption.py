"""`manage.py launcher` killed with SIGKILL and started again: it adopts the running
instance (same pid, one process), never starts a second copy, and can stop it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from servers.local import procs
from servers.local.control import request_start, request_stop
from servers.local.models import LocalInstance, LocalState
from tests.django_process import DjangoProcess, shared_database
from tests.servers.local.conftest import kill_if_ours

pytestmark = [pytest.mark.slow, shared_database, pytest.mark.django_db(transaction=True)]


def wait_for(instance: LocalInstance, until, what: str, timeout: float = 60.0) -> LocalInstance:
    deadline = time.monotonic() + timeout
    while True:
        instance.refresh_from_db()
        if until(instance):
            return instance
        if time.monotonic() > deadline:
            raise AssertionError(f"never {what}: {instance.state} {instance.error!r}")
        time.sleep(0.1)


def copies(port: int) -> list[int]:
    """Every process started as a ComfyUI on this port."""
    return [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit()
        and "main.py" in (argv := procs.cmdline(int(entry.name)))
        and argv[argv.index("main.py") :][3:5] == ["--port", str(port)]
    ]


def launcher_process(data_dir: Path) -> DjangoProcess:
    process = DjangoProcess.manage("launcher", "--tick", "0.2", COMFYWEB_DATA_DIR=str(data_dir))
    process.wait_for_line("launcher running")
    return process


def test_a_restarted_launcher_adopts_the_instance_it_finds_running(make_instance, tmp_path):
    instance = make_instance("studio")
    first = launcher_process(tmp_path / "data")
    second = None
    try:
        request_start(instance)
        instance = wait_for(instance, lambda i: i.state == LocalState.RUNNING, "running")
        pid, started = instance.pid, instance.process_started

        first.kill()  # SIGKILL, its process group: the instance is in a session of its own
        assert procs.is_alive(pid, started)

        second = launcher_process(tmp_path / "data")
        log = Path(instance.log_path)
        deadline = time.monotonic() + 60
        while f"adopted process {pid}" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        time.sleep(1.0)  # a few more ticks of the new launcher: still one copy

        instance.refresh_from_db()
        assert (instance.state, instance.pid, copies(instance.port)) == (
            LocalState.RUNNING,
            pid,
            [pid],
        )
        assert instance.server.enabled

        # The adopted process is the new launcher's to stop, group and all.
        request_stop(instance)
        instance = wait_for(instance, lambda i: i.state == LocalState.STOPPED, "stopped")
        assert not procs.is_alive(pid, started)
        assert copies(instance.port) == []
    finally:
        for process in (first, second):
            if process is not None:
                process.stop()
        instance.refresh_from_db()
        kill_if_ours(instance)
