"""A Redis that accepts connections and then never answers does not hang the cache's callers."""

from __future__ import annotations

import socket

import pytest
import redis
from django.core.cache import caches
from django.test import override_settings


@pytest.fixture
def silent_redis():
    """A port that accepts TCP connections and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"


def test_a_cache_call_to_a_silent_redis_gives_up_with_an_error(settings, silent_redis):
    cache_settings = {"default": settings.CACHES["default"] | {"LOCATION": silent_redis}}
    with override_settings(CACHES=cache_settings):
        cache = caches.create_connection("default")
        with pytest.raises(redis.exceptions.TimeoutError):
            cache.get("anything")
