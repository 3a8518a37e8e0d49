"""A real `manage.py serve` in a subprocess, on embedded defaults, for end-to-end tests."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

PROJECT = Path(__file__).resolve().parents[1]
# Lines of the boxed first-run message (comfyweb.first_run.credentials_box).
USERNAME = r"^\| +username: (\S+) +\|$"
PASSWORD = r"^\| +password: (\S+) +\|$"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_ports(count: int) -> list[int]:
    """`count` different free ports, for processes that bind them only later: two
    free_port() calls may return the same port while nothing holds it."""
    ports: list[int] = []
    while len(ports) < count:
        if (port := free_port()) not in ports:
            ports.append(port)
    return ports


@dataclass
class ServeProcess:
    process: subprocess.Popen
    url: str
    data_dir: Path | None = None  # where its database lives, for `manage()`
    lines: list[str] = field(default_factory=list)
    healthz_statuses: list[int] = field(default_factory=list)  # what wait_healthy saw
    username: str = ""
    password: str = ""

    def wait_for_line(self, pattern: str, timeout: float = 60, after: int = 0) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines[after:]:
                if match := re.search(pattern, line):
                    return match
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"serve never printed /{pattern}/; output:\n" + "\n".join(self.lines))

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                status = httpx.get(f"{self.url}healthz", timeout=2).status_code
                self.healthz_statuses.append(status)
                if status == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{self.url}healthz never turned 200")

    def stderr(self) -> str:
        """What serve and its children logged (start_serve sends it to a file)."""
        return (self.data_dir.parent / f"{self.data_dir.name}-stderr.log").read_text()

    def child_pid(self, name: str) -> int:
        matches = [re.search(rf"started {name} \(pid (\d+)\)", line) for line in self.lines]
        return int([m for m in matches if m][-1].group(1))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)


def serve_env(data_dir: Path) -> dict[str, str]:
    """The environment of a fresh install with its data in data_dir (also for its
    management commands)."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DEBUG"}}
    return env | {
        "COMFYWEB_DATA_DIR": str(data_dir),
        "SECRET_KEY": "serve-test-secret",
        "LOG_FORMAT": "text",
        "WORKER_PROCESSES": "1",
    }


def start_serve(data_dir: Path, *args: str, **env: str) -> ServeProcess:
    """`serve` as a fresh install would run it: SQLite and embedded Redis in data_dir;
    `args` are more options, `env` overrides variables (LOG_FORMAT="json")."""
    port = free_port()
    env = serve_env(data_dir) | env
    stderr = (data_dir.parent / f"{data_dir.name}-stderr.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port), *args],
        cwd=PROJECT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    serve = ServeProcess(process, f"http://127.0.0.1:{port}/", data_dir)
    threading.Thread(target=_collect, args=(serve,), daemon=True).start()
    return serve


def _collect(serve: ServeProcess) -> None:
    for line in serve.process.stdout:
        serve.lines.append(line.rstrip("\n"))


def launch(data_dir: Path, *args: str, **env: str) -> ServeProcess:
    serve = start_serve(data_dir, *args, **env)
    try:
        serve.wait_for_line("ComfyWeb is running at")
        serve.username = serve.wait_for_line(USERNAME).group(1)
        serve.password = serve.wait_for_line(PASSWORD).group(1)
        serve.wait_healthy()
    except BaseException:
        # A fixture that fails before yielding gets no teardown: stop it here,
        # or the whole process tree outlives the test run.
        serve.stop()
        raise
    return serve


def manage(serve: ServeProcess, *args: str) -> str:
    """Run a management command against serve's database; its stdout."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT,
        env=serve_env(serve.data_dir),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout
