"""Shared test set-up: a real Redis, a real `serve`, a real browser.

With REDIS_URL set (CI, `.ci/run`) the tests use that Redis. Without it they
start the embedded redis-server on a socket under COMFYWEB_DATA_DIR, exactly as
`serve` would, and stop it at the end.
"""

from __future__ import annotations

import os

import pytest
from django.conf import settings

from comfyweb import embedded_redis
from tests import browser
from tests.serve_process import free_port, launch
from tests.simulator_thread import SimulatorThread


def pytest_configure(config) -> None:
    # Async tests touch the database from worker threads; persistent connections
    # there would outlive the test run and block dropping the PostgreSQL test database.
    settings.DATABASES["default"]["CONN_MAX_AGE"] = 0
    # Test users need no slow password hashing (PBKDF2 costs ~0.3 s a user here).
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session", autouse=True)
def redis_server():
    process = None
    if settings.EMBEDDED_REDIS and not embedded_redis.is_answering(settings.EMBEDDED_REDIS_SOCKET):
        process = embedded_redis.start(settings.EMBEDDED_REDIS_SOCKET)
    yield settings.REDIS_URL
    if process is not None:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def running_serve(tmp_path_factory):
    """One `serve` for the whole session: SQLite and embedded Redis in a temp dir."""
    serve = launch(tmp_path_factory.mktemp("serve") / "data")
    yield serve
    serve.stop()


@pytest.fixture
def own_serve(tmp_path):
    """A `serve` of the test's own, for tests that kill or stop it."""
    serve = launch(tmp_path / "data")
    yield serve
    serve.stop()


@pytest.fixture
def page():
    """A Playwright page in Debian's Chromium that records console errors."""
    if not browser.CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's chromium package (see .ci/run)")
        pytest.skip("Debian's chromium package is not installed: apt-get install chromium")
    with browser.open_page() as page:
        yield page


@pytest.fixture
def simulator_thread(tmp_path):
    """A simulated ComfyUI on a fixed free port that a `serve` subprocess can reach."""
    sim = SimulatorThread(free_port(), tmp_path / "comfyui")
    sim.start()
    yield sim
    sim.close()
