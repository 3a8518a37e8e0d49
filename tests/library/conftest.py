"""The library's test world: a models directory of the test's own, the local range
server (tests/range_server.py), and a download run the way the worker runs it."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import connection

from library import downloader, hostlimit
from library.models import Download
from library.requests import request_download
from tests.range_server import Content, Faults, RangeServer

# A test whose own thread reads and writes while the job's threads do. The in-memory
# SQLite test database answers such overlaps with "database table is locked" at once
# (production's SQLite is a file with WAL and a busy timeout); PostgreSQL waits.
concurrent_database = pytest.mark.skipif(
    not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"),
    reason="threads at once on the in-memory SQLite test database: 'table is locked'",
)


@pytest.fixture(autouse=True)
def no_host_slots_held(redis_server) -> Iterator[None]:
    """Every test starts with the hosts' slots free: a worker that a test killed holds
    its slots until their leases end (LEASE_SECONDS), and the next test would wait."""

    def forget() -> None:
        with redis.Redis.from_url(settings.REDIS_URL) as client:
            keys = list(client.scan_iter(f"{hostlimit.PREFIX}:*"))
            if keys:
                client.delete(*keys)

    forget()
    yield
    forget()


@pytest.fixture
def models_dir(settings, tmp_path) -> Path:
    settings.COMFYWEB_MODELS_DIR = tmp_path / "models"
    return settings.COMFYWEB_MODELS_DIR


@pytest.fixture
def range_server() -> Iterator[Callable[..., RangeServer]]:
    """`range_server(size, faults=Faults(...), rate=...)`: started now, stopped after."""
    with contextlib.ExitStack() as stack:

        def start(size: int, *, seed: int = 1, faults: Faults | None = None, rate: float = 0):
            return stack.enter_context(RangeServer(Content(size, seed), faults=faults, rate=rate))

        yield start


@pytest.fixture
def fetch(models_dir, enqueued) -> Callable[..., Download]:
    """Ask for a download and run its job here, as the worker would; the download after."""

    def run(url: str, folder: str = "checkpoints", **options) -> Download:
        download = request_download(url, folder, **options)
        downloader.run(download.pk)
        download.refresh_from_db()
        return download

    return run


def wait_for(condition: Callable[[], object], *, within: float = 30.0, what: str = "condition"):
    """Poll `condition` until it is truthy (a bound on waiting, not a timed assertion)."""
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class Background:
    """A function on a thread of its own (with its own database connection)."""

    def __init__(self, function: Callable[[], object]) -> None:
        self.result: object = None
        self.error: BaseException | None = None

        def target() -> None:
            try:
                self.result = function()
            except BaseException as error:
                self.error = error
            finally:
                connection.close()

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def join(self, timeout: float = 60.0) -> object:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "still running"
        if self.error is not None:
            raise self.error
        return self.result


def run_in_background(download: Download, **options) -> Background:
    return Background(lambda: downloader.run(download.pk, **options))


def part_exists(download: Download) -> bool:
    return download.part_path.exists()
