"""Requests to one host are bounded over all the worker processes, not per process:
two real workers downloading from one range server never have more requests open
there at once than the limit, and the slots of a worker killed with them held come
back once their leases end (while the worker lived, it kept renewing them)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis
from django.conf import settings

from library.hostlimit import HostSlots, slots_key
from library.models import Download, DownloadState
from library.requests import request_download
from tests.django_process import DjangoProcess, shared_database
from tests.library.conftest import Background, wait_for
from tests.range_server import MiB
from tests.serve_process import free_port

LIMIT = 3
# A worker as django-q runs it, with a host limit of 3 and 1 MiB ranges (many requests).
WORKER = f"""
import sys
from library import downloader, hostlimit, store
hostlimit.HOST_LIMIT = {LIMIT}
store.RANGE_SIZE = 1024 * 1024
print("outcome", downloader.run(int(sys.argv[1])), flush=True)
"""
# A process that holds every slot of a host, as requests in flight do, renewing them.
HOLDER = f"""
import asyncio, contextlib, sys
from library.hostlimit import HostSlots

async def main():
    slots = HostSlots({LIMIT}, lease=float(sys.argv[2]))
    async with contextlib.AsyncExitStack() as stack:
        for _ in range({LIMIT}):
            await stack.enter_async_context(slots.slot(sys.argv[1]))
        print("holding", flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.fixture
def client() -> redis.Redis:
    with redis.Redis.from_url(settings.REDIS_URL) as connection:
        yield connection


@pytest.mark.slow
@shared_database
@pytest.mark.django_db(transaction=True)
def test_two_worker_processes_share_one_host_limit(range_server, models_dir, enqueued):
    size = 24 * MiB
    # Slow at first: every request lasts long enough for both workers to be at it at once.
    server = range_server(size, rate=512 * 1024)
    first = request_download(server.url("first.safetensors"), "checkpoints", connections=4)
    second = request_download(server.url("second.safetensors"), "loras", connections=4)
    workers = [
        DjangoProcess.python(WORKER, str(download.pk), COMFYWEB_MODELS_DIR=str(models_dir))
        for download in (first, second)
    ]
    try:
        # Both probed (the probe takes a slot too) and both fetching, neither done...
        probed = Download.objects.filter(pk__in=[first.pk, second.pk], size=size)
        wait_for(lambda: probed.count() == 2, within=60, what="both downloads probed")
        both = {"/files/first.safetensors", "/files/second.safetensors"}
        wait_for(
            lambda: {r.path for r in server.requests if "range" in r.headers} == both,
            within=60,
            what="ranges of both downloads asked for",
        )
        assert not Download.objects.filter(state=DownloadState.COMPLETED).exists()
        # ...then fast, to the end.
        server.set_rate(16 * MiB)
        for worker in workers:
            assert worker.wait_for_line("outcome", timeout=120).endswith("completed")
    finally:
        for worker in workers:
            worker.kill()

    for download in (first, second):
        download.refresh_from_db()
        assert download.state == DownloadState.COMPLETED, download.error
        assert download.sha256 == server.content.sha256()
    # Each worker alone would have used 3 (4 connections asked, limit 3): 6 without the
    # shared count. The server counts a request until just before its last byte leaves.
    assert server.max_active == LIMIT
    assert server.bytes_served == 2 * size


@pytest.mark.slow
@shared_database
def test_the_slots_of_a_killed_worker_come_back_when_their_leases_end(client):
    host = f"lease-test-{uuid.uuid4().hex}.example"
    lease = 3.0  # short, but a busy machine's stall of a second must not end it
    holder = DjangoProcess.python(HOLDER, host, str(lease))
    waiter = None
    try:
        holder.wait_for_line("holding")
        key = slots_key(host)
        taken = dict(client.zrange(key, 0, -1, withscores=True))
        assert len(taken) == LIMIT

        async def take_one() -> str | None:
            slots = HostSlots(LIMIT, lease=lease)
            try:
                return await slots.acquire(host)
            finally:
                await slots.close()

        waiter = Background(lambda: asyncio.run(take_one()))

        def redis_ms() -> float:
            seconds, micros = client.time()
            return seconds * 1000 + micros / 1000

        # Past the end of the leases as first taken: the holder renewed them, so they
        # are still its own, all of them, and the waiter still waits.
        ended = max(taken.values())
        wait_for(lambda: redis_ms() > ended + 200, what="the first leases to end")
        renewed = dict(client.zrange(key, 0, -1, withscores=True))
        assert set(renewed) == set(taken)
        assert all(renewed[token] > ended for token in taken)
        assert waiter.thread.is_alive()

        holder.kill()  # SIGKILL: it gives nothing back
        token = waiter.join(timeout=30)
        assert token is not None
        now = redis_ms()
        live = {t.decode() for t, ends in client.zrange(key, 0, -1, withscores=True) if ends > now}
        assert live == {token}  # the killed worker's leases all ended
    finally:
        holder.kill()
        client.delete(slots_key(host))


def test_without_redis_each_process_still_keeps_to_the_limit(caplog):
    unreachable = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there

    async def many_requests() -> int:
        slots = HostSlots(2, url=unreachable)
        inside = most = 0
        full = asyncio.Event()

        async def request() -> None:
            nonlocal inside, most
            async with slots.slot("127.0.0.1"):
                inside += 1
                most = max(most, inside)
                if inside == 2:
                    full.set()
                await full.wait()
                for _ in range(50):  # the others run meanwhile: none may come in
                    await asyncio.sleep(0)
                inside -= 1

        try:
            await asyncio.gather(*(request() for _ in range(6)))
        finally:
            await slots.close()
        return most

    assert asyncio.run(many_requests()) == 2
    assert "bounded in this process only" in caplog.text
