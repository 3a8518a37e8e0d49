"""Shared test set-up: a real Redis, a real `serve`, a real browser, the two
real Docker engines (tests/docker_engines.py), and the
fixtures tests of several apps use (a team and its member, simulators on a
thread, jobs run inline). Builders are plain functions in tests/factories.py.

With REDIS_URL set (CI, `.ci/run`) the tests use that Redis. Without it they
start the embedded redis-server on a socket under COMFYWEB_DATA_DIR, exactly as
`serve` would, and stop it at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django_q.conf import Conf

from comfyweb import embedded_redis
from servers.models import Server
from servers.simulator import SimulatorConfig
from tasks import dispatch, enqueue, sweep
from teams.models import Role, Team
from tests import browser
from tests.docker_engines import DockerEngines, docker_engines_for_test
from tests.factories import make_server, make_team, make_user
from tests.serve_process import free_port, launch
from tests.simulator_thread import SimThread, SimulatorThread


def pytest_configure(config) -> None:
    # Async tests touch the database from worker threads; persistent connections
    # there would outlive the test run and block dropping the PostgreSQL test database.
    settings.DATABASES["default"]["CONN_MAX_AGE"] = 0
    # Test users need no slow password hashing (PBKDF2 costs ~0.3 s a user here).
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Priority aging off: tests pin the queue's order with tasks made minutes apart;
    # tests/fairness turns it on with the rate each needs.
    settings.COMFYWEB_AGING_SECONDS_PER_LEVEL = 0


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


@pytest.fixture
def team() -> Team:
    return make_team("Studio")


@pytest.fixture
def member(team):
    """ada, a member of `team`."""
    return make_user("ada", team=team, role=Role.MEMBER)


@pytest.fixture
def member_client(client, member):
    """The test client (the `client` fixture itself), signed in as `member`."""
    client.force_login(member)
    return client


@pytest.fixture
def media(settings, tmp_path) -> Path:
    """Stored files (outputs, uploads) go to a media root of the test's own."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def sync_jobs(monkeypatch, media) -> None:
    """Jobs run inline (django-q2's sync mode, as in production but in-process)."""
    monkeypatch.setattr(Conf, "SYNC", True)


@pytest.fixture
def enqueued(monkeypatch) -> list[tuple]:
    """Jobs queued with django-q's async_task, recorded instead of sent."""
    jobs: list[tuple] = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda *args, **kw: jobs.append(args))
    return jobs


@pytest.fixture
def own_dispatch_keys(monkeypatch) -> None:
    """Own keys for the dispatch lock, wake-up and hand-off sweep: other test runs share Redis."""
    token = uuid.uuid4().hex
    monkeypatch.setattr(dispatch, "LOCK_KEY", f"test:{token}:dispatch-claim")
    monkeypatch.setattr(enqueue, "WAKE_KEY", f"test:{token}:dispatch-wake")
    monkeypatch.setattr(sweep, "KEY_PREFIX", f"test:{token}:sweep")


@pytest.fixture
def sim_thread(tmp_path) -> Iterator[SimThread]:
    """Simulated ComfyUI servers on a loop thread: `sim_thread.start(2)`."""
    sims = SimThread(tmp_path)
    try:
        yield sims
    finally:
        sims.stop()


@pytest.fixture
def simulated_server(sim_thread) -> Server:
    """A Server row for a simulated ComfyUI (on a loop thread: views are sync)."""
    (sim,) = sim_thread.start(1, config=SimulatorConfig())
    return make_server("sim-1", base_url=sim.base_url)


@pytest.fixture
def docker_engines() -> Iterator[DockerEngines]:
    """The two real Docker engines (tests/docker_engines.py); the test's containers
    (label comfyweb.deployment=docker_engines.deployment) are removed afterwards.
    Missing engines or image: the test fails under CI and is skipped elsewhere."""
    with docker_engines_for_test() as engines:
        yield engines
