"""A Django process of the test's own on the test's database and Redis: a worker to kill.

Production runs workers as separate processes that can die at any moment; these
tests start one (`python -c` with Django set up, or a management command), let
it reach the moment of interest, and SIGKILL it. Another process can open the
PostgreSQL test database, not the in-memory SQLite one, so such tests are
marked `shared_database`.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connections

from tests.serve_process import PROJECT

shared_database = pytest.mark.skipif(
    not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"),
    reason="another process cannot open the in-memory SQLite test database",
)


def database_url() -> str:
    """The test database (not the configured one) as a DATABASE_URL."""
    db = connections["default"].settings_dict
    auth = quote(db["USER"] or "", safe="")
    if db["PASSWORD"]:
        auth += ":" + quote(db["PASSWORD"], safe="")
    host = db["HOST"] or "127.0.0.1"
    return f"postgres://{auth}@{host}:{db['PORT'] or 5432}/{db['NAME']}"


class DjangoProcess:
    """A child process in a session of its own; its output lines (stdout and stderr,
    where Django logs) are read as they come."""

    def __init__(self, argv: list[str], **env: str) -> None:
        environ = os.environ | {
            "DJANGO_SETTINGS_MODULE": "comfyweb.settings",
            "DATABASE_URL": database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "SECRET_KEY": settings.SECRET_KEY,  # jobs are signed with it
            "LOG_FORMAT": "text",
        }
        self.process = subprocess.Popen(
            argv,
            cwd=PROJECT,
            env=environ | env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # a process group of its own, to end all of it
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    @classmethod
    def python(cls, code: str, *args: str, **env: str) -> DjangoProcess:
        """`python -c code args...` after `django.setup()`."""
        return cls([sys.executable, "-c", "import django\ndjango.setup()\n" + code, *args], **env)

    @classmethod
    def manage(cls, *args: str, **env: str) -> DjangoProcess:
        return cls([sys.executable, "manage.py", *args], **env)

    def _read(self) -> None:
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def wait_for_line(self, text: str, timeout: float = 60) -> str:
        """The first line from now on that holds `text` (a bound on waiting, not a
        timed assertion)."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line with {text!r}:\n" + "\n".join(seen)) from None
            if line is None:
                code = self.process.wait()
                raise AssertionError(
                    f"exited ({code}) before a line with {text!r}:\n" + "\n".join(seen)
                )
            if text in line:
                return line
            seen.append(line)

    def kill(self) -> None:
        """SIGKILL, as the OOM killer or a lost machine would: nothing of it cleans up."""
        self._signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM to its group, as a service manager stops it; SIGKILL if that fails."""
        self._signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()

    def _signal(self, signum: int) -> None:
        # The group outlives its leader while children of it run (qcluster's workers).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)
