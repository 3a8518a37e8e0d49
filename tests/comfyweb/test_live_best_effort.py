"""Publishing live updates is best effort: it never raises, and it survives a restart.

It runs after the work it reports was saved, so a Redis that is down must cost
browsers an update, never the caller its success.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from channels_redis.core import RedisChannelLayer
from django.test import override_settings

from comfyweb import live
from tests.private_redis import PrivateRedis, redis_down
from tests.simulator_thread import LoopThread

pytestmark = pytest.mark.django_db(transaction=True)
HTML = "<section id='health-panel'>x</section>"


def test_publishing_while_redis_is_down_returns_and_warns_once_without_the_password(caplog):
    caplog.set_level(logging.INFO, logger="comfyweb.live")
    with redis_down(password="sekrit-pw") as redis:
        live.publish_fragment("health", "health-panel", HTML)
        live.publish_refresh("queue", "queue-panel", "/queue/panel/")
        live.publish_data("task", "status", {"task_id": 1}, key="1")
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
        assert "not sent" in warnings[0].getMessage()
        assert "sekrit-pw" not in caplog.text

        redis.start()  # back: the next update goes out, and the log says so
        live.publish_fragment("health", "health-panel", HTML)
    assert "sent again" in caplog.records[-1].getMessage()


async def test_the_first_publish_after_a_redis_restart_reaches_listeners():
    redis, elsewhere = PrivateRedis(), LoopThread()
    redis.start()
    try:
        with override_settings(**redis.settings()):
            # The publisher's pooled connection is made before the restart...
            await live.apublish_fragment("health", "health-panel", HTML)
            # ...and used again before this loop has read the old server's goodbye:
            # nothing here awaits until the publish (the listener has a loop of its own).
            redis.restart()
            listener = RedisChannelLayer(hosts=[redis.url], prefix="comfyweb:asgi")
            channel = elsewhere.run(listener.new_channel())
            elsewhere.run(listener.group_add(live.group_name("health"), channel))

            await live.apublish_fragment("health", "health-panel", HTML)

            message = elsewhere.run(listener.receive(channel), timeout=10)
            assert message == live.fragment("health", "health-panel", HTML)
    finally:
        # channels_redis flushes on loop close, which may not run inside this loop.
        await asyncio.to_thread(elsewhere.close)
        redis.stop()


def test_sends_from_sync_code_share_one_redis_connection():
    """The channel layer pools connections per event loop: sync code publishes
    through one loop of the process's own, never a new connection per message."""
    import redis as redis_py

    private = PrivateRedis()
    private.start()
    try:
        with override_settings(**private.settings()):
            admin = redis_py.Redis.from_url(private.url)
            before = admin.info("stats")["total_connections_received"]
            for n in range(20):
                live.publish_data("task", "status", {"task_id": n}, key=str(n))
            made = admin.info("stats")["total_connections_received"] - before
            assert made <= 1
    finally:
        private.stop()
