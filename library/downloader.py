"""The downloader: one download, fetched in byte ranges over several connections
into `<final>.part`, verified, and renamed into the library (product items L2, L3).

It runs in the worker (`library.jobs.run_download`), never in a request:

1. Claim the download (`store.claim`); a job re-delivered after its worker died
   takes over from the dead runner.
2. Probe the URL (`Fetcher.probe`): size, range support, ETag/Last-Modified.
   401/403/404 end the download at once. A changed ETag, Last-Modified or size
   since the last run throws the .part and the recorded ranges away. If an earlier
   completed download of the same URL saw the same size and validators and the
   library still has its bytes, they are placed under this name: nothing is fetched
   (`store.fetched_before`).
3. Fetch the ranges (≤ 8 MiB each, `DownloadRange` rows) with up to
   `connections` requests at once (and at most `hostlimit.HOST_LIMIT` per host
   over all the worker processes: the probe too),
   each written at its offset with `os.pwrite`. A range whose connection drops
   continues from its done bytes; failures without progress back off
   (`comfyweb.backoff`), or wait what Retry-After says. Every request carries
   If-Range, so a file that changes mid-way answers 200 and is restarted.
   No range support or no size: one plain stream.
4. Twice a second: flush the .part to disk, then record each range's done bytes,
   the figures people watch, and the heartbeat; read `cancel_requested`; publish.
   A killed worker therefore re-fetches at most what arrived in the last half second.
5. Verify the sha256 (against the expected one, if given), then `os.replace`
   into place, record the `ModelFile`, and have the servers that read the library
   refetch their model lists. A file whose sha256 the library has already (under
   another name) becomes a hard link to it first: the bytes are stored once.

A job runs at most `SLICE_SECONDS` (below django-q's job timeout), then puts the
download back in the queue with its progress and queues itself again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
from django.db import connection

from comfyweb.backoff import backoff_delay
from library import files, store
from library.enqueue import queue_download
from library.hostlimit import HostSlots
from library.http import (
    Fetcher,
    FetchError,
    Remote,
    content_range_total,
    host_of,
    raise_for_status,
    transport_error,
)
from library.models import Download, DownloadState, ModelFile
from library.progress import publish_progress
from library.readers import library_changed

logger = logging.getLogger(__name__)

PROGRESS_INTERVAL = 0.5  # seconds between progress writes (and publishes)
SLICE_SECONDS = 240.0  # django-q kills a job after 300 s
MAX_TRIES = 8  # failures in a row, without progress, of one range (or the probe)
MAX_RESTARTS = 3  # the file changed on the server this many times: give up
SPEED_WINDOW = 3.0  # seconds of samples behind `speed_bps`


class Restart(Exception):
    """The file is not the one being fetched any more, or ranges do not work after all."""

    def __init__(self, reason: str, *, no_ranges: bool = False) -> None:
        super().__init__(reason)
        self.no_ranges = no_ranges


@dataclass
class Slot:
    """A range being fetched: `done` counts bytes written, `saved` those recorded."""

    id: int
    start: int
    end: int
    done: int
    saved: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    @property
    def offset(self) -> int:
        return self.start + self.done


async def run_together(coroutines: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run all; the first failure cancels the others and is raised."""
    tasks = [asyncio.create_task(coroutine) for coroutine in coroutines]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in tasks:
            if task in done and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class Run:
    """One job's work on one claimed download."""

    def __init__(self, download: Download, runner: str, *, slice_seconds: float) -> None:
        self.download = download
        self.runner = runner
        self.slice_seconds = slice_seconds
        self.host = host_of(download.url)
        self.fd: int | None = None
        self.slots: dict[int, Slot] = {}
        self.base_done = 0  # bytes of ranges finished before this run
        self.stream_done = 0  # bytes of a plain stream
        # The .part's sha256, kept up with the bytes that are final (see files.PrefixHasher).
        self.hasher: files.PrefixHasher | None = None
        self._final_prefix: Callable[[], int] = lambda: 0
        self.fetched = 0  # bytes received in this run
        self.active = 0
        self._samples: collections.deque[tuple[float, int]] = collections.deque()
        self._stop: str | None = None  # "cancel", "lost" or "slice"
        self._fetch: asyncio.Task[Remote] | None = None
        # A library file with the bytes an earlier download of this URL got (see
        # store.fetched_before): placed instead of fetching anything.
        self.earlier: ModelFile | None = None
        self._flush_lock = asyncio.Lock()
        self._db_thread = ThreadPoolExecutor(1, thread_name_prefix="library-db")
        self.host_slots: HostSlots | None = None  # made in the job's event loop

    # -- plumbing ---------------------------------------------------------------------

    async def db(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """The ORM, on this run's own thread (and connection)."""
        call = functools.partial(function, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._db_thread, call)

    def log(self, message: str, *args: Any) -> None:
        d = self.download
        logger.info(
            "download %s (%s/%s from %s): " + message, d.pk, d.folder, d.filename, self.host, *args
        )

    @property
    def downloaded(self) -> int:
        return self.base_done + sum(s.done for s in self.slots.values()) + self.stream_done

    def request_stop(self, reason: str) -> None:
        if self._stop in (None, "slice"):
            self._stop = reason
        if self._fetch is not None and not self._fetch.done():
            self._fetch.cancel()

    def stopping(self) -> bool:
        return self._stop in ("cancel", "lost")

    # -- the job ------------------------------------------------------------------------

    async def run(self) -> str:
        self.host_slots = HostSlots()
        try:
            return await self._run()
        finally:
            await self.host_slots.close()
            if self.fd is not None:
                os.close(self.fd)
            await self.db(close_connection)
            self._db_thread.shutdown()

    async def _run(self) -> str:
        self.log("started (%d connections)", self.download.connections)
        progress = asyncio.create_task(self._progress_loop())
        hashing = asyncio.create_task(self._hash_loop())
        deadline = asyncio.get_running_loop().call_later(
            self.slice_seconds, self.request_stop, "slice"
        )
        error: BaseException | None = None
        remote: Remote | None = None
        try:
            async with Fetcher(
                self.download.url, self.download.headers, connections=self.download.connections
            ) as fetcher:
                self._fetch = asyncio.create_task(self._fetch_all(fetcher))
                try:
                    remote = await self._fetch
                except asyncio.CancelledError:
                    if self._stop is None:
                        raise
                except (FetchError, OSError) as failure:
                    error = failure
                except Exception as failure:  # a bug or the database: fail it, say why
                    logger.exception("download %s failed", self.download.pk)
                    error = failure
            deadline.cancel()
            if remote is not None and self.earlier is not None and not self.stopping():
                hashing.cancel()
                return await self._place_earlier(self.earlier, remote, progress)
            if remote is not None and not self.stopping():
                await self._flush()
                hashing.cancel()
                return await self._verify_and_place(remote, progress)
            await self._flush()
        finally:
            deadline.cancel()
            hashing.cancel()
            progress.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await progress
        if self._stop == "lost":
            self.log("taken over by another worker")
            return "lost"
        if self._stop == "cancel":
            return await self._canceled()
        if error is not None:
            return await self._failed(describe(error))
        await self.db(store.requeue, self.download.pk, self.runner)
        await self.db(queue_download, self.download.pk)
        self.log("time slice over at %d bytes: queued again", self.downloaded)
        return "requeued"

    # -- fetching -----------------------------------------------------------------------

    async def _fetch_all(self, fetcher: Fetcher) -> Remote:
        no_ranges = False
        for restart in range(MAX_RESTARTS + 1):
            remote = await self._retrying("probe", functools.partial(self._probe, fetcher))
            if restart == 0:
                self.earlier = await self.db(store.fetched_before, self.download, remote)
                if self.earlier is not None:
                    return remote
            part = self.download.part_path
            part_size = part.stat().st_size if part.exists() else None
            plan = await self.db(
                store.prepare, self.download.pk, remote, part_size, ranges_ok=not no_ranges
            )
            self._open(plan, remote)
            try:
                if plan.ranges is None:
                    self.log("one stream (size %s, ranges %s)", remote.size, remote.ranges)
                    await self._fetch_stream(fetcher)
                else:
                    await self._fetch_ranges(fetcher, plan, remote)
                return remote
            except Restart as restart:
                self.log("starting over: %s", restart)
                no_ranges = no_ranges or restart.no_ranges
                self.slots, self.base_done, self.stream_done = {}, 0, 0
                self._final_prefix = lambda: 0
                await self.db(store.forget_progress, self.download.pk)
                assert self.fd is not None
                os.ftruncate(self.fd, 0)
        raise FetchError(
            "the file kept changing on the server while it was fetched", permanent=True
        )

    async def _probe(self, fetcher: Fetcher) -> Remote:
        async with self._host_slot():
            return await fetcher.probe()

    def _host_slot(self) -> contextlib.AbstractAsyncContextManager[None]:
        assert self.host_slots is not None
        return self.host_slots.slot(self.host)

    def _open(self, plan: store.Plan, remote: Remote) -> None:
        part = self.download.part_path
        part.parent.mkdir(parents=True, exist_ok=True)
        if self.fd is None:
            self.fd = os.open(part, os.O_RDWR | os.O_CREAT, 0o644)
        if plan.reset:
            os.ftruncate(self.fd, 0)
        self.hasher = files.PrefixHasher(self.fd)
        if remote.size is not None:
            needed = remote.size - plan.done
            free = shutil.disk_usage(part.parent).free
            if needed > free:
                raise FetchError(
                    f"not enough disk space: {needed} bytes needed, {free} free", permanent=True
                )
            if plan.ranges is not None:
                os.ftruncate(self.fd, remote.size)  # sparse: blocks come with the data

    async def _retrying(self, what: str, attempt: Callable[[], Awaitable[Any]]) -> Any:
        tries = 0
        while True:
            try:
                return await attempt()
            except FetchError as error:
                if error.permanent:
                    raise
                tries += 1
                if tries >= MAX_TRIES:
                    raise FetchError(f"{error} ({tries} tries)", permanent=True) from None
                delay = wait_for(error, tries)
                self.log("%s failed (%s); again in %.1f s", what, error, delay)
                await asyncio.sleep(delay)

    async def _fetch_ranges(self, fetcher: Fetcher, plan: store.Plan, remote: Remote) -> None:
        assert plan.ranges is not None
        self.slots = {r.pk: Slot(r.pk, r.start, r.end, r.done, r.done) for r in plan.ranges}
        self.base_done = plan.done - sum(r.done for r in plan.ranges)
        queue = collections.deque(sorted(self.slots.values(), key=lambda s: s.start))
        size = remote.size or 0
        self._final_prefix = lambda: min(
            (s.offset for s in self.slots.values() if s.done < s.length), default=size
        )
        workers = max(1, min(self.download.connections, len(queue)))
        self.log(
            "%d ranges to fetch, %d bytes done, %d connections", len(queue), plan.done, workers
        )
        await run_together(self._worker(fetcher, queue, remote) for _ in range(workers))

    async def _worker(self, fetcher: Fetcher, queue: collections.deque[Slot], remote: Remote):
        while queue:
            slot = queue.popleft()
            await self._fetch_range(fetcher, slot, remote)

    async def _fetch_range(self, fetcher: Fetcher, slot: Slot, remote: Remote) -> None:
        tries = 0
        while slot.done < slot.length:
            before = slot.done
            try:
                async with self._host_slot():
                    self.active += 1
                    try:
                        await self._stream_range(fetcher, slot, remote)
                    finally:
                        self.active -= 1
            except FetchError as error:
                if error.permanent:
                    raise
                if slot.done > before:  # it moved: pick up where the connection dropped
                    tries, delay = 0, error.retry_after or 0.0
                else:
                    tries += 1
                    if tries >= MAX_TRIES:
                        raise FetchError(f"{error} ({tries} tries)", permanent=True) from None
                    delay = wait_for(error, tries)
                self.log("bytes %d-%d: %s; again in %.1f s", slot.offset, slot.end, error, delay)
                await asyncio.sleep(delay)

    async def _stream_range(self, fetcher: Fetcher, slot: Slot, remote: Remote) -> None:
        offset = slot.offset
        headers = {"Range": f"bytes={offset}-{slot.end}"}
        # If-Range takes a strong ETag or a date: a changed file then answers 200, whole.
        validator = remote.etag if remote.etag and not remote.etag.startswith("W/") else ""
        if validator or remote.last_modified:
            headers["If-Range"] = validator or remote.last_modified
        async with fetcher.stream("GET", headers) as response:
            if response.status_code == 200:
                if Remote.validators_of(response) != (remote.etag, remote.last_modified):
                    raise Restart("the file changed on the server")
                raise Restart("the server ignores ranges", no_ranges=True)
            if response.status_code == 416:
                raise Restart("the file changed size on the server")
            raise_for_status(response)
            span = content_range_total(response.headers.get("content-range"))
            if response.status_code != 206 or span is None:
                raise FetchError(
                    f"HTTP {response.status_code} without a byte range", permanent=True
                )
            first, last, total = span
            etag = response.headers.get("etag", "")
            if (total is not None and total != remote.size) or (
                remote.etag and etag and etag != remote.etag
            ):
                raise Restart("the file changed on the server")
            if first != offset or last > slot.end:
                raise FetchError(f"asked for bytes {offset}-, got {first}-{last}", permanent=False)
            try:
                async for chunk in response.aiter_raw():
                    self._write(slot, chunk, last)
            except httpx.HTTPError as error:
                raise transport_error(error, response.url) from None
        if slot.offset <= last:
            raise FetchError(f"connection to {response.url.host} closed early", permanent=False)

    def _write(self, slot: Slot, chunk: bytes, last: int) -> None:
        if slot.offset + len(chunk) > last + 1:
            raise FetchError("the server sent more than the range", permanent=False)
        self._pwrite(chunk, slot.offset)
        slot.done += len(chunk)
        self.fetched += len(chunk)

    def _pwrite(self, chunk: bytes, offset: int) -> None:
        assert self.fd is not None
        view = memoryview(chunk)
        while view:
            written = os.pwrite(self.fd, view, offset)
            view, offset = view[written:], offset + written

    async def _fetch_stream(self, fetcher: Fetcher) -> None:
        """The whole file in one request, from byte 0 (on every try: no ranges)."""

        async def attempt() -> None:
            assert self.fd is not None
            os.ftruncate(self.fd, 0)
            self.stream_done = 0
            self.hasher = files.PrefixHasher(self.fd)
            self._final_prefix = lambda: self.stream_done
            async with self._host_slot():
                self.active = 1
                try:
                    async with fetcher.stream("GET") as response:
                        raise_for_status(response)
                        try:
                            async for chunk in response.aiter_raw():
                                self._pwrite(chunk, self.stream_done)
                                self.stream_done += len(chunk)
                                self.fetched += len(chunk)
                        except httpx.HTTPError as error:
                            raise transport_error(error, response.url) from None
                finally:
                    self.active = 0

        await self._retrying("stream (from the start)", attempt)

    # -- hashing while fetching ----------------------------------------------------------

    async def _hash_loop(self) -> None:
        """Hash each byte once it is final: below the lowest unfinished range."""
        while True:
            hasher, final = self.hasher, self._final_prefix()
            if hasher is None or final <= hasher.position:
                await asyncio.sleep(0.05)
                continue
            try:
                await asyncio.to_thread(hasher.advance, final, self.stopping)
            except InterruptedError:
                return

    # -- progress -------------------------------------------------------------------------

    async def _progress_loop(self) -> None:
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL)
            try:
                await self._flush()
            except asyncio.CancelledError:
                raise
            except Exception:  # a database hiccup must not end the download
                logger.exception("download %s: progress not saved", self.download.pk)

    def _speed(self) -> int:
        now = time.monotonic()
        self._samples.append((now, self.fetched))
        while len(self._samples) > 2 and now - self._samples[0][0] > SPEED_WINDOW:
            self._samples.popleft()
        (then, before) = self._samples[0]
        return int((self.fetched - before) / (now - then)) if now > then else 0

    async def _flush(self) -> None:
        """Record what is on disk; heartbeat; notice a cancel or a takeover."""
        async with self._flush_lock:
            changed = {s.id: s.done for s in self.slots.values() if s.done != s.saved}
            downloaded = self.downloaded
            if changed and self.fd is not None:
                # The bytes first, then the numbers that promise them.
                await asyncio.to_thread(os.fdatasync, self.fd)
            beat = await self.db(
                store.save_progress,
                self.download.pk,
                self.runner,
                changed,
                downloaded=downloaded,
                speed_bps=self._speed(),
                active=self.active,
            )
            for slot_id, done in changed.items():
                self.slots[slot_id].saved = done
        if not beat.owned:
            self.request_stop("lost")
        elif beat.cancel_requested:
            self.request_stop("cancel")
        if beat.download is not None:
            await self.db(publish_progress, beat.download)

    # -- endings --------------------------------------------------------------------------

    async def _verify_and_place(self, remote: Remote, progress: asyncio.Task[None]) -> str:
        d = self.download
        if not await self.db(store.set_state, d.pk, self.runner, DownloadState.VERIFYING):
            return "lost"
        await self.db(self._publish)
        assert self.fd is not None
        await asyncio.to_thread(os.fsync, self.fd)
        size = os.fstat(self.fd).st_size
        if remote.size is not None and size != remote.size:
            return await self._failed(f"got {size} bytes, the server said {remote.size}")
        assert self.hasher is not None
        try:  # the rest of it: the hash loop has done the bytes that were final
            await asyncio.to_thread(self.hasher.advance, None, self.stopping)
        except InterruptedError:
            return "lost" if self._stop == "lost" else await self._canceled()
        sha256 = self.hasher.hexdigest()
        if d.expected_sha256 and sha256 != d.expected_sha256:
            files.remove_quietly(d.part_path)
            message = f"sha256 mismatch: expected {d.expected_sha256}, got {sha256}"
            return await self._failed(message, forget_ranges=True)
        if d.final_path.exists():
            return await self._failed(f"{d.folder}/{d.filename} appeared in the library meanwhile")
        # The library holds these bytes already (under another name): keep them once,
        # the .part becoming a hard link to that file; where no link can be made, a
        # copy would store them twice all the same, so the .part stays as it is.
        note = ""
        twin = await self.db(store.file_with, sha256)
        if twin is not None and await asyncio.to_thread(
            files.replace_with_link, twin.path, d.part_path
        ):
            note = store.copy_note(twin, linked=True)
        await self._stop_progress(progress)
        os.replace(d.part_path, d.final_path)
        placed = await self.db(
            store.complete, d.pk, self.runner, size=size, sha256=sha256, note=note
        )
        if placed is None:
            return "lost"
        self.log("completed: %d bytes, sha256 %s%s", size, sha256, f" ({note})" if note else "")
        await self.db(library_changed)
        await self.db(self._publish)
        return "completed"

    async def _place_earlier(
        self, twin: ModelFile, remote: Remote, progress: asyncio.Task[None]
    ) -> str:
        """The server still describes the file an earlier download of this URL got, and
        the library has its bytes: placed under this name (a link, else a copy)."""
        d = self.download
        try:  # a copy takes a while: the heartbeat goes on meanwhile
            linked = await asyncio.to_thread(files.place_copy, twin.path, d.final_path)
        except FileExistsError:
            return await self._failed(f"{d.folder}/{d.filename} appeared in the library meanwhile")
        await self._stop_progress(progress)
        files.remove_quietly(d.part_path)  # from an earlier time slice, if any
        note = store.copy_note(twin, linked=linked)
        placed = await self.db(
            store.complete,
            d.pk,
            self.runner,
            size=twin.size,
            sha256=twin.sha256,
            note=note,
            remote=remote,
        )
        if placed is None:
            return "lost"
        self.log("completed without fetching (%s; ETag %s)", note, remote.etag or "none")
        await self.db(library_changed)
        await self.db(self._publish)
        return "completed"

    @staticmethod
    async def _stop_progress(progress: asyncio.Task[None]) -> None:
        """No progress write may follow the file's placing."""
        progress.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await progress

    def _publish(self) -> None:
        download = Download.objects.filter(pk=self.download.pk).first()
        if download is not None:
            publish_progress(download)

    async def _failed(self, message: str, *, forget_ranges: bool = False) -> str:
        self.log("failed: %s", message)
        await self.db(
            store.fail, self.download.pk, self.runner, message, forget_ranges=forget_ranges
        )
        await self.db(self._publish)
        return "failed"

    async def _canceled(self) -> str:
        files.remove_quietly(self.download.part_path)
        await self.db(store.cancel, self.download.pk, self.runner)
        await self.db(self._publish)
        self.log("canceled")
        return "canceled"


def close_connection() -> None:
    """The db thread's own connection (`connection` is per thread: look it up there)."""
    connection.close()


def wait_for(error: FetchError, tries: int) -> float:
    """Seconds before the next try: what the server asked for, else the backoff."""
    if error.retry_after is not None:
        return error.retry_after
    return backoff_delay(tries - 1)


def describe(error: BaseException) -> str:
    if isinstance(error, FetchError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def run(download_id: int, *, slice_seconds: float | None = None) -> str:
    """Claim and work on the download until it ends or its time slice is up; returns
    what happened ("completed", "failed", "canceled", "requeued", "lost", "not claimed")."""
    runner = store.new_runner()
    download = store.claim(download_id, runner)
    if download is None:
        return "not claimed"
    if download.cancel_requested:
        files.remove_quietly(download.part_path)
        store.cancel(download.pk, runner)
        publish_progress(Download.objects.get(pk=download.pk))
        return "canceled"
    work = Run(download, runner, slice_seconds=slice_seconds or SLICE_SECONDS)
    return asyncio.run(work.run())
