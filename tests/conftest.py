"""Shared test set-up: a real Redis for every test session.

With REDIS_URL set (CI, `.ci/run`) the tests use that server. Without it they
start the embedded redis-server on a socket under COMFYWEB_DATA_DIR, exactly as
`serve` would, and stop it at the end.
"""

from __future__ import annotations

import pytest
from django.conf import settings

from comfyweb import embedded_redis


def pytest_configure(config) -> None:
    # Async tests touch the database from worker threads; persistent connections
    # there would outlive the test run and block dropping the PostgreSQL test database.
    settings.DATABASES["default"]["CONN_MAX_AGE"] = 0


@pytest.fixture(scope="session", autouse=True)
def redis_server():
    process = None
    if settings.EMBEDDED_REDIS and not embedded_redis.is_answering(settings.EMBEDDED_REDIS_SOCKET):
        process = embedded_redis.start(settings.EMBEDDED_REDIS_SOCKET)
    yield settings.REDIS_URL
    if process is not None:
        process.terminate()
        process.wait(timeout=10)
