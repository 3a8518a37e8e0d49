"""What several benchmarks share: a throwaway Django, a trivial graph, percentiles.

Not a benchmark itself (`make bench` runs `bench_*.py`). The scripts put the
repository root on `sys.path` before importing it as `bench.common`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pathlib
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import psutil

ROOT = pathlib.Path(__file__).resolve().parents[1]


def setup_django(data_dir: pathlib.Path, database_url: str | None = None):
    """Django on a fresh database (SQLite in `data_dir` unless `database_url` names
    one, e.g. from `throwaway_postgres`), with an embedded Redis.

    Returns the Redis process, for the caller to stop.
    """
    os.environ["COMFYWEB_DATA_DIR"] = str(data_dir)
    os.environ["DATABASE_URL"] = database_url or f"sqlite:///{data_dir / 'bench.sqlite3'}"
    os.environ.pop("REDIS_URL", None)
    os.environ.setdefault("SECRET_KEY", "bench-only")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "comfyweb.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from comfyweb import embedded_redis

    redis_process = embedded_redis.start(settings.EMBEDDED_REDIS_SOCKET)
    call_command("migrate", verbosity=0)
    return redis_process


@contextlib.contextmanager
def throwaway_postgres(server_url: str, name: str, template: str | None = None) -> Iterator[str]:
    """A new PostgreSQL database `name` on the server of `server_url` (any database
    there to connect to), empty or a copy of `template`, dropped on the way out;
    yields its URL."""
    import psycopg

    base, _, _ = server_url.rpartition("/")
    copy = f' TEMPLATE "{template}"' if template else ""
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"{copy}')
    try:
        yield f"{base}/{name}"
    finally:
        from django.db import connections

        connections.close_all()  # Django's own connection would hold the drop up
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def trivial_graph(color: int) -> dict[str, Any]:
    """An 8x8 image sent back over the socket; `color` makes each prompt distinct."""
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": color},
        },
        "2": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["1", 0]}},
    }


def percentile(samples: list[float], fraction: float) -> float:
    """The sample at `fraction` of the sorted samples (nearest rank)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


# -- child processes and CPU (benchmarks that run real processes) ----------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Child:
    """A child process in its own session, its output lines collected by a thread."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: pathlib.Path):
        self.name = name
        self.log = log
        self.lines: list[str] = []
        self._stderr = log.open("w")
        self.process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            start_new_session=True,  # a Ctrl-C reaches only the parent, which stops it in order
        )
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = 90.0) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if match := re.search(pattern, line):
                    return match
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(
            f"{self.name} never printed /{pattern}/ (exit {self.process.poll()}); "
            f"output: {self.lines[-10:]}; stderr: {self.stderr_tail()}"
        )

    def stderr_tail(self, lines: int = 15) -> str:
        self._stderr.flush()
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM (e.g. serve stops its own children in order), then SIGKILL what is left."""
        try:
            root = psutil.Process(self.process.pid)
            left = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            left = []
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=timeout)
        for proc in left:
            with contextlib.suppress(psutil.Error):
                if proc.is_running():
                    proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        self._stderr.close()


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its descendants, reaped ones included."""
    total = 0.0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
    return total


class BusySampler:
    """The machine's CPU once a second, in a thread: how busy it was, and how much of
    that was this benchmark's own processes (the rest is other work on the machine)."""

    def __init__(self) -> None:
        # (epoch seconds, machine busy CPU-seconds, this process tree's CPU-seconds)
        self.samples: list[tuple[float, float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> BusySampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self._sample()

    def _sample(self) -> None:
        times = psutil.cpu_times()
        busy = sum(
            getattr(times, name, 0.0)
            for name in ("user", "nice", "system", "irq", "softirq", "steal")
        )
        self.samples.append((time.time(), busy, tree_cpu_seconds(os.getpid())))

    def summary(self, started: float, ended: float) -> str:
        """Over the seconds sampled between `started` and `ended`."""
        window = [s for s in self.samples if started <= s[0] <= ended + 1.0]
        if len(window) < 2:
            return "machine: the run was shorter than the sampling period"
        cores = os.cpu_count() or 1
        seconds = [(b[1] - a[1]) / (b[0] - a[0]) / cores for a, b in itertools.pairwise(window)]
        span = window[-1][0] - window[0][0]
        machine = (window[-1][1] - window[0][1]) / span / cores
        ours = (window[-1][2] - window[0][2]) / span / cores
        return (
            f"machine CPU over the run: {machine:.0%} busy "
            f"(≥ 95 % in {sum(x >= 0.95 for x in seconds) / len(seconds):.0%} of "
            f"{len(seconds)} s); this benchmark's processes {ours:.0%}, "
            f"other work on the machine {max(0.0, machine - ours):.0%}"
        )
