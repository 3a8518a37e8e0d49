"""The launcher with real processes: start, stop, crash and restart, a stuck child,
a taken port, a process it cannot prove is its own (issue #14, L1)."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from servers.local import procs
from servers.local.console import console_tail
from servers.local.control import delete_instance, request_restart, request_start, request_stop
from servers.local.models import LocalState, Wanted
from servers.models import Server, ServerKind
from tests.serve_process import free_port
from tests.servers.local.conftest import drive

pytestmark = [pytest.mark.slow, pytest.mark.django_db]

RUNNING = LocalState.RUNNING


def running(launcher, instance):
    request_start(instance)
    return drive(launcher, instance, lambda i: i.state == RUNNING, what="running")


def group_gone(pgid: int, timeout: float = 10.0) -> bool:
    """No process left in the group: a killed helper's zombie is reaped by init, on
    its own time, so wait for that (a bound, not a timed assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def log_text(instance) -> str:
    return Path(instance.log_path).read_text()


def foreign_listener(port: int) -> subprocess.Popen:
    """Someone else's server on the port (a process of its own)."""
    code = (
        "import socket, sys, time\n"
        "s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\n"
        "print('listening', flush=True); time.sleep(600)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(port)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "listening"
    return process


def test_a_started_instance_answers_and_joins_the_fleet_as_a_local_server(launcher, make_instance):
    instance = running(launcher, make_instance("studio"))

    # The pid is ComfyUI's own (no wrapper shell), leading a process group of its own.
    argv = procs.cmdline(instance.pid)
    assert argv[1:6] == ["main.py", "--listen", "127.0.0.1", "--port", str(instance.port)]
    assert procs.stat(instance.pid).pgrp == instance.pid
    assert instance.process_started == procs.start_time(instance.pid)
    stats = httpx.get(f"http://127.0.0.1:{instance.port}/system_stats", timeout=5)
    assert stats.status_code == 200
    server = instance.server
    assert (server.name, server.kind, server.base_url, server.enabled) == (
        "local-studio",
        ServerKind.LOCAL,
        f"http://127.0.0.1:{instance.port}",
        True,
    )
    assert server in Server.objects.in_fleet()
    # Its console: the log file, and the ring buffer other processes read.
    models_file = argv[argv.index("--extra-model-paths-config") + 1]
    assert f'base_path: "{launcher.config.root / "models"}"' in Path(models_file).read_text()
    assert "stand-in ComfyUI --listen 127.0.0.1" in log_text(instance)
    drive(launcher, instance, lambda i: any("model paths" in x for x in console_tail(i, 50)))
    assert any(line.startswith("[launcher") for line in console_tail(instance, 50))


def test_stop_ends_the_whole_process_group_and_frees_the_port(launcher, make_instance):
    instance = running(launcher, make_instance("studio", helper=True))
    pgid = instance.pid
    assert len(procs.group_members(pgid)) == 2  # the stand-in and its helper

    request_stop(instance)
    instance = drive(launcher, instance, lambda i: i.state == LocalState.STOPPED, what="stopped")

    assert group_gone(pgid)
    assert procs.port_free(instance.port)
    assert (instance.pid, instance.wanted, instance.exit_code) == (None, Wanted.STOPPED, 0)
    server = Server.objects.get(pk=instance.server_id)
    assert not server.enabled
    assert server not in Server.objects.in_fleet()
    # Stopped stays stopped.
    for _ in range(5):
        launcher.tick()
    instance.refresh_from_db()
    assert (instance.state, instance.pid) == (LocalState.STOPPED, None)


def test_a_killed_child_is_restarted_with_growing_delays_then_left_crashed(launcher, make_instance):
    instance = running(launcher, make_instance("studio"))
    limit = launcher.config.crash_limit
    delays, pids = [], []
    for crash in range(1, limit + 1):
        pids.append(instance.pid)
        os.kill(instance.pid, signal.SIGKILL)
        instance = drive(
            launcher,
            instance,
            lambda i: i.state == LocalState.CRASHED or (i.state == RUNNING and i.pid != pids[-1]),
            what=f"restarted after crash {crash}",
        )
        if crash == limit:
            break
        assert instance.state == RUNNING, instance.error
        # Recorded: when it exited, when the restart was due, when it was started.
        assert instance.started_at >= instance.next_start_at > instance.exited_at
        delays.append(instance.next_start_at - instance.exited_at)

    assert instance.state == LocalState.CRASHED
    assert all(earlier < later for earlier, later in itertools.pairwise(delays)), delays
    assert len(set(pids)) == limit
    assert (instance.restarts, instance.consecutive_crashes) == (limit - 1, limit)
    assert instance.error.startswith(f"ComfyUI was killed by SIGKILL: {limit} crashes in a row")
    assert "its last log lines:" in instance.error
    assert "stand-in ComfyUI --listen 127.0.0.1" in instance.error
    assert not Server.objects.get(pk=instance.server_id).enabled
    # Crashed: no loop of its own.
    for _ in range(10):
        launcher.tick()
    instance.refresh_from_db()
    assert (instance.state, instance.pid, launcher.children) == (LocalState.CRASHED, None, {})


def test_without_auto_restart_a_crash_is_final(launcher, make_instance):
    instance = running(launcher, make_instance("studio", auto_restart=False))
    os.kill(instance.pid, signal.SIGKILL)
    instance = drive(launcher, instance, lambda i: i.state == LocalState.CRASHED)
    assert instance.restarts == 0
    assert instance.error.startswith("ComfyUI was killed by SIGKILL; its last log lines:")


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace(make_launcher, make_instance):
    launcher = make_launcher(stop_grace=1.0)
    instance = running(launcher, make_instance("stubborn", ignore_term=True, helper=True))
    pgid = instance.pid

    request_stop(instance)
    instance = drive(launcher, instance, lambda i: i.state == LocalState.STOPPED, what="stopped")

    assert instance.exit_code == -signal.SIGKILL
    assert "did not stop within 1 s: SIGKILL to process group" in log_text(instance)
    assert group_gone(pgid)
    assert procs.port_free(instance.port)


def test_a_port_taken_by_another_process_is_refused_and_that_process_left_alone(
    launcher, make_instance
):
    port = free_port()
    foreign = foreign_listener(port)
    try:
        instance = make_instance("studio", port=port)
        request_start(instance)
        instance = drive(launcher, instance, lambda i: i.state == LocalState.ERROR)
        assert instance.error == f"port {port} is in use by another process"
        for _ in range(10):  # no loop of retries
            launcher.tick()
        instance.refresh_from_db()
        assert (instance.state, instance.pid, launcher.children) == (LocalState.ERROR, None, {})
        assert foreign.poll() is None
        assert not Server.objects.filter(kind=ServerKind.LOCAL).exists()
    finally:
        foreign.kill()
        foreign.wait()
    # The port is free again: asked again, it starts.
    assert running(launcher, instance).pid is not None


def test_a_recorded_process_not_proven_ours_is_left_alone(launcher, make_instance):
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        instance = make_instance("studio", wanted=Wanted.RUNNING)
        instance.state, instance.pid = RUNNING, stranger.pid
        instance.process_started = procs.start_time(stranger.pid) + 1  # another process
        instance.save()

        instance = drive(launcher, instance, lambda i: i.state == LocalState.ERROR)

        assert instance.error == (
            f"process {stranger.pid} on port {instance.port} is not proven ours: left alone"
        )
        for _ in range(5):
            launcher.tick()
        assert stranger.poll() is None
        assert launcher.children == {}
    finally:
        stranger.kill()
        stranger.wait()


def test_a_restart_request_replaces_the_process(launcher, make_instance):
    instance = running(launcher, make_instance("studio"))
    first = instance.pid

    request_restart(instance)
    instance = drive(launcher, instance, lambda i: i.state == RUNNING and i.pid != first)

    assert group_gone(first)
    assert (instance.restarts, instance.restart_requested_at) == (0, None)  # asked, not a crash
    assert instance.server.enabled


def test_a_new_launcher_adopts_the_running_instance_instead_of_starting_another(
    make_launcher, make_instance
):
    first = make_launcher()
    instance = running(first, make_instance("studio"))
    second = make_launcher()

    for _ in range(5):
        second.tick()

    instance.refresh_from_db()
    assert (instance.state, instance.pid) == (RUNNING, second.children[instance.pk].pid)
    assert second.children[instance.pk].adopted
    assert "adopted process" in log_text(instance)


def test_deleting_a_running_instance_stops_its_process(launcher, make_instance):
    instance = running(launcher, make_instance("studio"))
    pgid, server_id = instance.pid, instance.server_id

    delete_instance(instance)
    for _ in range(200):
        launcher.tick()
        if not launcher.children:
            break

    assert launcher.children == {}
    assert group_gone(pgid)
    assert not Server.objects.get(pk=server_id).enabled


def test_an_install_without_main_py_is_refused(launcher, make_instance, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    instance = make_instance("studio", comfyui_dir=str(empty))
    request_start(instance)
    instance = drive(launcher, instance, lambda i: i.state == LocalState.ERROR)
    assert instance.error == f"there is no main.py in {empty}"


def test_a_spawn_whose_record_was_lost_is_recorded_not_started_twice(launcher, make_instance):
    instance = make_instance("studio")
    request_start(instance)
    launcher.tick()  # spawned
    (child,) = launcher.children.values()
    # The database lost the write (it failed after the spawn).
    type(instance).objects.filter(pk=instance.pk).update(state=LocalState.STOPPED, pid=None)

    instance = drive(launcher, instance, lambda i: i.state == RUNNING)

    assert instance.pid == child.pid
    assert list(launcher.children.values()) == [child]
