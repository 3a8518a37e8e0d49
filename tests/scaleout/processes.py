"""ComfyWeb's process types started more than once on the test's database and a Redis
database of the test's own (issue 17: any number of each)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx
import redis
from django.conf import settings
from django.test import Client

from tests.django_process import DjangoProcess
from tests.faults.deployment import START_BOUND, wait_for
from tests.serve_process import free_port


def redis_db_url(db: int) -> str:
    """The test's Redis server, database `db`: processes started together share it, and
    nothing else uses it."""
    return urlunsplit(urlsplit(settings.REDIS_URL)._replace(path=f"/{db}"))


def flushed_redis_db(db: int) -> None:
    """Empty the test's Redis database `db`: no channel group of an earlier run is left."""
    redis.Redis.from_url(redis_db_url(db)).flushdb()


def session_cookie(user) -> str:
    """`name=value` of a session of `user`'s, as a browser that signed in sends it."""
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


@dataclass
class WebProcess:
    process: DjangoProcess
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/live/"

    def stop(self) -> None:
        self.process.stop()


def web_process(redis_db: int) -> WebProcess:
    """`daphne comfyweb.asgi:application` as production runs it, listening."""
    port = free_port()
    argv = [sys.executable, "-m", "daphne", "--bind", "127.0.0.1", "--port", str(port)]
    process = DjangoProcess([*argv, "comfyweb.asgi:application"], REDIS_URL=redis_db_url(redis_db))
    try:
        # Any answer will do: /healthz is degraded without workers and monitors.
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/healthz"), START_BOUND, "daphne")
    except BaseException:
        process.stop()
        raise
    return WebProcess(process, port)
