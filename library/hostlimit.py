"""How many requests the library's downloads make to one host at once, counted over
every worker process of the deployment: a counting semaphore in Redis with leases.

Each django-q worker process runs its own event loop, so a semaphore in memory
bounds one process only: N workers would open N x HOST_LIMIT connections to one
model host, which is what gets a client throttled or banned. The count lives in
Redis (`settings.REDIS_URL`), the one thing all of them share; this module is the
only one that speaks to it about slots.

- One sorted set per host, `comfyweb:library:host-slots:<host>`: a member per slot
  held (a random token), scored with the end of its lease in Redis's own clock
  (milliseconds), so the workers' clocks never matter.
- Taking a slot is one Lua script, atomic: drop the leases that ended, then add ours
  if fewer than `limit` remain. A holder renews its lease every third of it (the same
  script), so a request may last any time; a worker killed with slots held gives
  them back when their leases end, within `LEASE_SECONDS`.
- Giving one back removes it and publishes on the host's channel. The process waiting
  for that host is subscribed there and tries again at once; without a message it
  tries again after a short backoff (50 ms doubling to 1 s), and never later than the
  earliest lease ends.
- In each process a local semaphore of the same size comes first (the process never
  asks Redis for more than the limit), and one coroutine per host waits on Redis at
  a time, the others queued behind it in order.
- Redis not answering: the local semaphore still bounds this process, and a warning
  says that the bound across processes is off until Redis answers (the job queue is
  in Redis too: that is a blip, not a way of running).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator

import redis
import redis.asyncio as aioredis
from django.conf import settings

from comfyweb.backoff import backoff_delay

logger = logging.getLogger(__name__)

# Requests at once to one host, whatever the downloads ask for.
HOST_LIMIT = 8
# A slot whose holder stops renewing it (a killed worker) is free again after this.
LEASE_SECONDS = 30.0
PREFIX = "comfyweb:library:host-slots"
REDIS_TIMEOUT = 5.0

# KEYS[1]: the host's set. ARGV: token, limit, lease (ms). Takes a slot, or extends the
# lease of the one the token holds. Returns {1, 0} if the token holds a slot now, else
# {0, ms until the earliest lease ends}.
_TAKE = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local lease = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
    redis.call('ZADD', KEYS[1], ms + lease, ARGV[1])
    redis.call('PEXPIRE', KEYS[1], 2 * lease)
    return {1, 0}
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, tonumber(first[2]) - ms}
"""


def slots_key(host: str) -> str:
    return f"{PREFIX}:{host.lower()}"


def released_channel(host: str) -> str:
    return f"{slots_key(host)}:released"


class HostSlots:
    """The slots of one process (one event loop: a worker job's) on the shared count.

    `limit` and `lease` default to HOST_LIMIT and LEASE_SECONDS as they are when it is
    made. Use `async with slots.slot(host):` around each request; `close()` at the end.
    """

    def __init__(
        self, limit: int | None = None, *, lease: float | None = None, url: str | None = None
    ) -> None:
        self.limit = HOST_LIMIT if limit is None else limit
        self.lease = LEASE_SECONDS if lease is None else lease
        self._redis = aioredis.Redis.from_url(
            url or settings.REDIS_URL,
            socket_timeout=REDIS_TIMEOUT,
            socket_connect_timeout=REDIS_TIMEOUT,
        )
        self._take_script = self._redis.register_script(_TAKE)
        self._local: dict[str, asyncio.Semaphore] = {}
        self._gates: dict[str, asyncio.Lock] = {}
        self._warned = False

    async def close(self) -> None:
        await self._redis.aclose()

    @contextlib.asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        """Hold one of the host's slots (waiting for one) while the block runs."""
        local = self._local.setdefault(host, asyncio.Semaphore(self.limit))
        async with local:
            token = await self.acquire(host)
            renewing = asyncio.create_task(self._renew(host, token)) if token else None
            try:
                yield
            finally:
                if renewing is not None:
                    renewing.cancel()
                if token is not None:
                    # Shielded: a cancelled request still gives its slot back.
                    await asyncio.shield(self.release(host, token))

    async def acquire(self, host: str) -> str | None:
        """Wait for a slot; its token, or None if Redis did not answer (no slot held)."""
        token = uuid.uuid4().hex
        try:
            async with self._gates.setdefault(host, asyncio.Lock()):
                await self._wait_for_slot(host, token)
        except redis.RedisError as error:
            self._warn(host, error)
            return None
        return token

    async def release(self, host: str, token: str) -> None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zrem(slots_key(host), token)
                pipe.publish(released_channel(host), b"1")
                await pipe.execute()
        except redis.RedisError as error:  # the lease ends on its own
            self._warn(host, error)

    async def _take(self, host: str, token: str) -> tuple[bool, float]:
        taken, wait_ms = await self._take_script(
            keys=[slots_key(host)], args=[token, self.limit, int(self.lease * 1000)]
        )
        return bool(taken), max(0.0, float(wait_ms) / 1000)

    async def _wait_for_slot(self, host: str, token: str) -> None:
        pubsub = None
        tries = 0
        try:
            while True:
                taken, lease_ends = await self._take(host, token)
                if taken:
                    return
                if pubsub is None:
                    # Subscribed before waiting: a slot given back from now on wakes us.
                    # One given back before it is seen by the next try, right away.
                    pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                    await pubsub.subscribe(released_channel(host))
                    continue
                pause = min(backoff_delay(tries, base=0.05, cap=1.0, jitter=0.05), lease_ends)
                tries += 1
                await pubsub.get_message(timeout=max(pause, 0.001))
        finally:
            if pubsub is not None:
                with contextlib.suppress(redis.RedisError):
                    await pubsub.aclose()

    async def _renew(self, host: str, token: str) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                held, _ = await self._take(host, token)
            except redis.RedisError as error:
                self._warn(host, error)
                continue
            if not held:  # stalled past its lease, and the others filled the host meanwhile
                logger.warning("host %s: a request outlived its slot's lease", host)

    def _warn(self, host: str, error: Exception) -> None:
        if not self._warned:
            self._warned = True
            logger.warning(
                "host %s: requests are bounded in this process only (Redis: %s)",
                host,
                type(error).__name__,
            )
