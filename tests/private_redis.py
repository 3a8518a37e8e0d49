"""A Redis of the test's own, to stop and restart: Redis outages for real.

`redis_down()` points everything ComfyWeb keeps in Redis (the channel layer, the
cache, the django-q broker) at a private redis-server that has answered once
and then stopped, as after a crash: nothing there mocks Redis away.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator

from django.test import override_settings
from django_q.conf import Conf

from comfyweb.embedded_redis import server_binary
from tests.serve_process import free_port

READY = "Ready to accept connections"


class PrivateRedis:
    """redis-server on a free port, nothing persisted; `url` may carry a password."""

    def __init__(self, password: str = "") -> None:
        self.port = free_port()
        self.password = password
        auth = f":{password}@" if password else ""
        self.url = f"redis://{auth}127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        argv = [str(server_binary()), "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        if self.password:
            argv += ["--requirepass", self.password]
        self.process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        # Its log says when it listens: wait for that line, not for a while.
        for line in self.process.stdout:
            if READY in line:
                return
        raise RuntimeError(f"redis-server on port {self.port} exited before it was ready")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process.stdout.close()
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def settings(self) -> dict:
        """Settings overrides that put the channel layer and the cache on this Redis."""
        return {
            "CHANNEL_LAYERS": {
                "default": {
                    "BACKEND": "channels_redis.core.RedisChannelLayer",
                    "CONFIG": {"hosts": [self.url], "prefix": "comfyweb:asgi"},
                }
            },
            "CACHES": {
                "default": {
                    "BACKEND": "django.core.cache.backends.redis.RedisCache",
                    "LOCATION": self.url,
                    "KEY_PREFIX": "comfyweb",
                }
            },
        }


@contextlib.contextmanager
def private_redis(password: str = "") -> Iterator[PrivateRedis]:
    """A running private Redis that the channel layer, cache and broker use."""
    redis = PrivateRedis(password)
    redis.start()
    broker = Conf.REDIS  # django-q reads its settings once, at import
    try:
        with override_settings(**redis.settings()):
            Conf.REDIS = redis.url
            yield redis
    finally:
        Conf.REDIS = broker
        redis.stop()


@contextlib.contextmanager
def redis_down(password: str = "") -> Iterator[PrivateRedis]:
    """Everything kept in Redis points at one that answered, then stopped."""
    with private_redis(password) as redis:
        from django.core.cache import cache

        cache.set("comfyweb:test:alive", 1)  # it worked a moment ago
        redis.stop()
        yield redis
