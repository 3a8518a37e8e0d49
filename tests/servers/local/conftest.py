"""Local instances for real: a temporary "ComfyUI install" whose main.py is a stand-in
that takes ComfyUI's flags and runs the project's simulator on them, started by a
real launcher (`servers.local.launcher`), on 127.0.0.1 only.

Tests drive the launcher's loop themselves (`drive`), one tick at a time, and wait
on what it records (states, pids, timestamps), never on how long something took.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from servers.local import procs
from servers.local.launcher import Launcher, LauncherConfig
from servers.local.models import LocalInstance
from tests.serve_process import PROJECT, free_port

# A stand-in for ComfyUI's main.py: ComfyUI's own flags, then the simulator's runner
# on them. With IGNORE_TERM, SIGTERM stays blocked (pending, never delivered): a
# ComfyUI that hangs on shutdown. With HELPER it first starts a helper process,
# which stays in its process group.
STAND_IN = """\
import argparse
import pathlib
import signal
import subprocess
import sys

IGNORE_TERM = {ignore_term}
HELPER = {helper}

parser = argparse.ArgumentParser()
parser.add_argument("--listen", required=True)
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--extra-model-paths-config", required=True)
options, extra = parser.parse_known_args()
print("stand-in ComfyUI", " ".join(sys.argv[1:]), flush=True)
for line in pathlib.Path(options.extra_model_paths_config).read_text().splitlines()[:2]:
    print("model paths:", line, flush=True)
if HELPER:
    helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    print("helper pid", helper.pid, flush=True)
if IGNORE_TERM:
    signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGTERM}})
    print("stand-in ComfyUI ignores SIGTERM", flush=True)

from servers.simulator.runner import main

sys.exit(main(["--host", options.listen, "--port", str(options.port),
               "--data-dir", str(pathlib.Path("sim-data").resolve())]))
"""

# Short enough for tests, the backoff still dominating its jitter so each delay is
# longer than the one before.
TEST_CONFIG = {
    "tick": 0.1,
    "stop_grace": 3.0,
    "startup_cap": 120.0,
    "backoff_base": 0.4,
    "backoff_cap": 30.0,
    "backoff_jitter": 0.1,
    "crash_limit": 4,
}


def comfyui_install(root: Path, *, ignore_term: bool = False, helper: bool = False) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "main.py").write_text(STAND_IN.format(ignore_term=ignore_term, helper=helper))
    return root


@pytest.fixture
def launcher_root(tmp_path) -> Path:
    return tmp_path / "local"


@pytest.fixture
def make_launcher(launcher_root) -> Iterator[Callable[..., Launcher]]:
    """`make_launcher(**config)`: a launcher on a root of the test's own. Whatever
    any of them started is killed at the end, group and all."""
    made: list[Launcher] = []

    def make(**overrides) -> Launcher:
        config = LauncherConfig(
            **(TEST_CONFIG | {"root": launcher_root, "models_dir": launcher_root / "models"})
            | overrides
        )
        launcher = Launcher(config)
        made.append(launcher)
        return launcher

    yield make
    for launcher in made:
        for child in launcher.children.values():
            if child.is_ours():
                procs.signal_group(child.pid, signal.SIGKILL)
            child.reap()
    for instance in LocalInstance.objects.exclude(pid=None):
        kill_if_ours(instance)


def kill_if_ours(instance: LocalInstance) -> None:
    if instance.pid and procs.start_time(instance.pid) == instance.process_started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(instance.pid, signal.SIGKILL)


@pytest.fixture
def launcher(make_launcher) -> Launcher:
    return make_launcher()


@pytest.fixture
def make_instance(tmp_path) -> Callable[..., LocalInstance]:
    drawn: set[int] = set()  # none is bound until its instance starts: never draw one twice

    def make(
        name: str = "studio", *, ignore_term: bool = False, helper: bool = False, **fields
    ) -> LocalInstance:
        install = comfyui_install(tmp_path / name, ignore_term=ignore_term, helper=helper)
        fields.setdefault("comfyui_dir", str(install))
        fields.setdefault("python", sys.executable)
        if "port" not in fields:
            fields["port"] = next(p for p in iter(free_port, None) if p not in drawn)
        drawn.add(fields["port"])
        fields.setdefault("environment", {"PYTHONPATH": str(PROJECT)})
        instance = LocalInstance(name=name, **fields)
        instance.full_clean()
        instance.save()
        return instance

    return make


def drive(
    launcher: Launcher,
    instance: LocalInstance,
    until: Callable[[LocalInstance], bool],
    *,
    timeout: float = 60.0,
    what: str = "",
) -> LocalInstance:
    """Tick the launcher until `until(instance)` holds (a bound on waiting, not a
    timed assertion); the instance as it is then."""
    deadline = time.monotonic() + timeout
    while True:
        launcher.tick()
        instance.refresh_from_db()
        if until(instance):
            return instance
        if time.monotonic() > deadline:
            raise AssertionError(
                f"never {what or 'reached'}: state {instance.state}, pid {instance.pid}, "
                f"error {instance.error!r}"
            )
        time.sleep(launcher.config.tick)
