"""A process of a local instance: how it is started, told apart, signalled, ended.

A pid alone names a process only while it lives. The launcher records each
child's pid with its start time (`procs`) and signals its process group only
while the leader is proven to be that process: our own child before we reap it
(its zombie keeps the pid, and so the group id, from being reused), or an adopted
one whose start time still matches.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from servers.clients import client_for
from servers.comfyui import ComfyUIError, Timeouts
from servers.local import logfile, procs
from servers.local.models import LocalInstance

LISTEN = "127.0.0.1"  # loopback only: ComfyUI has no authentication of its own
# A probe of a starting ComfyUI: a refused connection answers at once.
PROBE = Timeouts(connect=1.0, read=3.0, write=3.0, pool=1.0)
# What of the launcher's own environment a ComfyUI child gets: enough to run, none
# of ComfyWeb's secrets (DATABASE_URL, SECRET_KEY, REDIS_URL).
PASSED_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM")
# A recorded start time and the /proc one agree to the clock tick; the wall-clock
# start of the process and our `started_at` agree this closely (another boot's
# process with the same pid and start ticks does not).
WALL_CLOCK_SLACK = 30.0


@dataclass(frozen=True)
class Endpoint:
    """Where an instance's ComfyUI answers (a `servers.clients.Reachable`)."""

    base_url: str
    auth_headers: dict[str, str] | None = None


@dataclass
class Child:
    """A process of an instance: started by this launcher (`popen`) or adopted."""

    instance_id: int
    name: str
    pid: int
    starttime: int
    port: int
    tail: logfile.LogTail
    popen: subprocess.Popen | None = None
    stop_deadline: float | None = None  # monotonic; SIGKILL to the group after it
    killed: bool = False
    failure: str = ""  # why the launcher stopped it (a start that never answered)
    members: list[procs.ProcStat] = field(default_factory=list)

    @property
    def adopted(self) -> bool:
        return self.popen is None

    def exit_status(self) -> tuple[bool, int | None]:
        """(exited, code): code < 0 is the signal that killed it, None unknown (adopted).

        Our own child is not reaped here (WNOWAIT): its zombie keeps its pid, and so
        its process group id, from being reused until the group is cleaned up.
        """
        if self.popen is None:
            return (not procs.is_alive(self.pid, self.starttime), None)
        if self.popen.returncode is not None:
            return True, self.popen.returncode
        try:
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True, self.popen.poll()
        if info is None:
            return False, None
        if info.si_code == os.CLD_EXITED:
            return True, info.si_status
        return True, -info.si_status

    def is_ours(self) -> bool:
        """Its leader is still the process we recorded (so its group is ours)."""
        if self.popen is not None:
            return self.popen.returncode is None  # not reaped: the pid is still ours
        return procs.is_alive(self.pid, self.starttime)

    def signal(self, sig: int) -> bool:
        """Signal the whole process group, only while it is proven ours."""
        if self.is_ours():
            return procs.signal_group(self.pid, sig)
        # An adopted leader is gone: only the members seen while it lived, each
        # still the same process.
        for member in self.members:
            if procs.is_alive(member.pid, member.starttime):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(member.pid, sig)
        return False

    def reap(self) -> None:
        if self.popen is not None:
            with contextlib.suppress(ChildProcessError, subprocess.TimeoutExpired):
                self.popen.wait(timeout=5)


def describe_exit(code: int | None) -> str:
    if code is None:
        return "exited (an adopted process: its exit code is unknown)"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with code {code}"


def comfyui_answers(port: int) -> bool:
    """ComfyUI answers `/system_stats` on the port (with ComfyUI's own answer)."""

    async def look() -> None:
        async with client_for(Endpoint(f"http://{LISTEN}:{port}"), "check") as client:
            await client.system_stats(timeouts=PROBE)

    try:
        asyncio.run(asyncio.wait_for(look(), 10.0))
    except (ComfyUIError, TimeoutError, OSError):
        return False
    return True


@functools.cache
def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    return 0.0


def child_env(instance: LocalInstance) -> dict[str, str]:
    env = {name: os.environ[name] for name in PASSED_ENV if name in os.environ}
    env |= {name: value for name, value in os.environ.items() if name.startswith("LC_")}
    env["PYTHONUNBUFFERED"] = "1"  # its console reaches the log as it prints
    env |= instance.environment
    if instance.gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(instance.gpus)
    return env


def launch_command(instance: LocalInstance) -> tuple[list[str], str] | str:
    """(argv up to our flags, working directory), or why there is nothing to run."""
    flags = ["--listen", LISTEN, "--port", str(instance.port)]
    if instance.comfyui_dir:
        if not (Path(instance.comfyui_dir) / "main.py").is_file():
            return f"there is no main.py in {instance.comfyui_dir}"
        return [instance.python, "main.py", *flags], instance.comfyui_dir
    script = Path(instance.start_script)
    if not script.is_file() or not os.access(script, os.X_OK):
        return f"the start script {script} is not an executable file"
    return [str(script), *flags], str(script.parent)


def proven_ours(instance: LocalInstance, found: procs.ProcStat) -> bool:
    """The live process `found` is the one the launcher recorded for the instance."""
    if instance.process_started is None or found.starttime != instance.process_started:
        return False
    if instance.started_at is None:
        return False
    started = _boot_time() + found.starttime / os.sysconf("SC_CLK_TCK")
    return abs(started - instance.started_at.timestamp()) <= WALL_CLOCK_SLACK
