"""The downloader's database side: claiming a download, recording what the probe
found and the progress made, and ending it. Sync ORM functions; the engine runs
them on one thread of its own.

Every write by a running job is conditional on the row still naming it as its
`runner`: a job that lost its claim (a second worker took over a download whose
runner looked dead) notices on its next progress write and stops.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from library.http import Remote
from library.models import Download, DownloadRange, DownloadState, ModelFile

# A runner that has not written progress for this long is presumed dead.
STALE_AFTER = timedelta(seconds=60)
RANGE_SIZE = 8 * 1024 * 1024

_RUNNABLE = (DownloadState.RUNNING, DownloadState.VERIFYING)


def new_runner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def runner_gone(runner: str, heartbeat_at, now=None) -> bool:
    """True if the process named by `runner` is not working on its download any more:
    silent for STALE_AFTER, or (on this host) no longer alive."""
    now = now or timezone.now()
    if not runner or heartbeat_at is None or now - heartbeat_at > STALE_AFTER:
        return True
    host, _, rest = runner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def claim(download_id: int, runner: str) -> Download | None:
    """Make `runner` the download's worker: a queued one, or a running one whose runner
    is gone (its job was re-delivered, or run again, after the worker died)."""
    now = timezone.now()
    taken = Download.objects.filter(pk=download_id, state=DownloadState.QUEUED).update(
        state=DownloadState.RUNNING, runner=runner, heartbeat_at=now, error=""
    )
    if not taken:
        row = (
            Download.objects.filter(pk=download_id, state__in=_RUNNABLE)
            .values("runner", "heartbeat_at")
            .first()
        )
        if row is None or not runner_gone(row["runner"], row["heartbeat_at"], now):
            return None
        taken = Download.objects.filter(
            pk=download_id, state__in=_RUNNABLE, runner=row["runner"]
        ).update(state=DownloadState.RUNNING, runner=runner, heartbeat_at=now)
        if not taken:
            return None
    Download.objects.filter(pk=download_id, started_at__isnull=True).update(started_at=now)
    return Download.objects.get(pk=download_id)


@dataclass
class Plan:
    """What to fetch: the ranges still to do (None: one plain stream), and whether the
    .part on disk must be thrown away first."""

    ranges: list[DownloadRange] | None
    reset: bool
    done: int  # bytes already on disk that count


def prepare(
    download_id: int, remote: Remote, part_size: int | None, *, ranges_ok: bool = True
) -> Plan:
    """Compare the fresh probe with what the last run saw; keep the recorded ranges if
    the file is the same and the .part still holds them, else start over. Then make
    the ranges (None: the server cannot serve ranges, one plain stream from byte 0)."""
    with transaction.atomic():
        download = Download.objects.select_for_update().get(pk=download_id)
        recorded = list(DownloadRange.objects.filter(download=download))
        same_file = (
            download.size is not None
            and download.size == remote.size
            and (
                download.etag == remote.etag
                if download.etag
                else download.last_modified == remote.last_modified
            )
        )
        part_holds_them = part_size is not None and part_size >= max_end(recorded)
        use_ranges = ranges_ok and remote.ranges and bool(remote.size)
        keep = use_ranges and bool(recorded) and same_file and part_holds_them
        if not keep:
            DownloadRange.objects.filter(download=download).delete()
            recorded = []
        download.size = remote.size
        download.etag = remote.etag
        download.last_modified = remote.last_modified
        download.accepts_ranges = remote.ranges
        if use_ranges and not recorded:
            assert remote.size is not None
            recorded = DownloadRange.objects.bulk_create(
                DownloadRange(
                    download=download, start=start, end=min(start + RANGE_SIZE, remote.size) - 1
                )
                for start in range(0, remote.size, RANGE_SIZE)
            )
        download.downloaded = sum(r.done for r in recorded)
        download.save(
            update_fields=["size", "etag", "last_modified", "accepts_ranges", "downloaded"]
        )
    if not use_ranges:
        return Plan(None, reset=True, done=0)
    pending = sorted((r for r in recorded if r.done < r.length), key=lambda r: r.start)
    return Plan(pending, reset=not keep, done=download.downloaded)


def max_end(ranges) -> int:
    """The end of the furthest byte recorded as done (what the .part must hold)."""
    return max((r.start + r.done for r in ranges if r.done), default=0)


def forget_progress(download_id: int) -> None:
    """The remote file changed under us: forget the ranges (the engine empties the .part)."""
    DownloadRange.objects.filter(download_id=download_id).delete()
    Download.objects.filter(pk=download_id).update(
        downloaded=0, size=None, etag="", last_modified=""
    )


@dataclass(frozen=True)
class Heartbeat:
    owned: bool
    cancel_requested: bool
    download: Download | None


def save_progress(
    download_id: int,
    runner: str,
    done: dict[int, int],
    *,
    downloaded: int,
    speed_bps: int,
    active: int,
) -> Heartbeat:
    """Record range progress (bytes already flushed to disk) and the live figures."""
    with transaction.atomic():
        owned = Download.objects.filter(pk=download_id, runner=runner, state__in=_RUNNABLE).update(
            downloaded=downloaded,
            speed_bps=speed_bps,
            active_connections=active,
            heartbeat_at=timezone.now(),
        )
        if owned and done:
            rows = [DownloadRange(pk=pk, done=value) for pk, value in done.items()]
            DownloadRange.objects.bulk_update(rows, ["done"])
    download = Download.objects.filter(pk=download_id).first()
    cancel = bool(download and download.cancel_requested)
    return Heartbeat(bool(owned), cancel, download)


def set_state(download_id: int, runner: str, state: DownloadState) -> bool:
    return bool(
        Download.objects.filter(pk=download_id, runner=runner, state__in=_RUNNABLE).update(
            state=state
        )
    )


def requeue(download_id: int, runner: str) -> bool:
    """The job's time slice is up: back in the queue, progress kept."""
    return bool(
        Download.objects.filter(pk=download_id, runner=runner, state__in=_RUNNABLE).update(
            state=DownloadState.QUEUED, runner="", active_connections=0, speed_bps=0
        )
    )


def _mine(download_id: int, runner: str):
    return Download.objects.filter(pk=download_id, runner=runner, state__in=_RUNNABLE)


def _end(rows, **fields) -> bool:
    return bool(
        rows.update(
            runner="",
            active_connections=0,
            speed_bps=0,
            finished_at=timezone.now(),
            **fields,
        )
    )


def fail(download_id: int, runner: str, error: str, *, forget_ranges: bool = False) -> bool:
    """Failed; the ranges and .part stay for a retry unless they are worthless."""
    with transaction.atomic():
        ended = _end(_mine(download_id, runner), state=DownloadState.FAILED, error=error[:2000])
        if ended and forget_ranges:
            _forget_ranges(download_id)
    return ended


def _forget_ranges(download_id: int) -> None:
    DownloadRange.objects.filter(download_id=download_id).delete()
    Download.objects.filter(pk=download_id).update(downloaded=0)


def cancel(download_id: int, runner: str) -> bool:
    """The runner saw the cancel request (the engine removes the .part)."""
    with transaction.atomic():
        ended = _end(_mine(download_id, runner), state=DownloadState.CANCELED, error="")
        if ended:
            _forget_ranges(download_id)
    return ended


def cancel_unclaimed(download_id: int) -> bool:
    """Cancel a download no live worker holds (queued, or its runner died); False if
    one does: that worker ends it when it reads `cancel_requested`."""
    rows = Download.objects.filter(pk=download_id)
    with transaction.atomic():
        ended = _end(rows.filter(state=DownloadState.QUEUED), state=DownloadState.CANCELED)
        if not ended:
            row = rows.filter(state__in=_RUNNABLE).values("runner", "heartbeat_at").first()
            if row is not None and runner_gone(row["runner"], row["heartbeat_at"]):
                held = rows.filter(state__in=_RUNNABLE, runner=row["runner"])
                ended = _end(held, state=DownloadState.CANCELED)
        if ended:
            _forget_ranges(download_id)
    return ended


def complete(
    download_id: int,
    runner: str,
    *,
    size: int,
    sha256: str,
    note: str = "",
    remote: Remote | None = None,
) -> ModelFile | None:
    """The file is in place: the download completed and the library row made or updated.
    `note` says how, when it is not the usual way (the bytes were in the library already);
    `remote` is what the probe said, for a download that went no further than it."""
    probed = {}
    if remote is not None:
        probed = {
            "etag": remote.etag,
            "last_modified": remote.last_modified,
            "accepts_ranges": remote.ranges,
        }
    with transaction.atomic():
        download = Download.objects.select_for_update().get(pk=download_id)
        ended = _end(
            _mine(download_id, runner),
            state=DownloadState.COMPLETED,
            error=note,
            size=size,
            downloaded=size,
            sha256=sha256,
            cancel_requested=False,
            **probed,
        )
        if not ended:
            return None
        DownloadRange.objects.filter(download_id=download_id).delete()
        model_file, _ = ModelFile.objects.update_or_create(
            folder=download.folder,
            filename=download.filename,
            defaults={"size": size, "sha256": sha256},
        )
    return model_file


def requeue_for_retry(download_id: int) -> bool:
    """A failed or canceled download back in the queue, its ranges (if any) kept."""
    return bool(
        Download.objects.filter(
            pk=download_id, state__in=(DownloadState.FAILED, DownloadState.CANCELED)
        ).update(
            state=DownloadState.QUEUED,
            error="",
            cancel_requested=False,
            finished_at=None,
            runner="",
            speed_bps=0,
            active_connections=0,
        )
    )


def request_cancel(download_id: int) -> None:
    Download.objects.filter(pk=download_id, state__in=(DownloadState.QUEUED, *_RUNNABLE)).update(
        cancel_requested=True
    )


# -- the same bytes twice: stored once ------------------------------------------------


def file_with(sha256: str) -> ModelFile | None:
    """A library file with these bytes (by its recorded sha256) that is still there
    at its recorded size; None if there is none."""
    if not sha256:
        return None
    for candidate in ModelFile.objects.filter(sha256=sha256):
        path = candidate.path
        if path.is_file() and path.stat().st_size == candidate.size:
            return candidate
    return None


def copy_note(twin: ModelFile, *, linked: bool) -> str:
    """What a download that stored no bytes of its own says about it (page and API)."""
    how = "a hard link to it" if linked else "a copy of it"
    return f"already in the library as {twin}: stored as {how}"


def same_file(remote: Remote, size: int | None, etag: str, last_modified: str) -> bool:
    """Whether the probe describes the file an earlier download recorded, surely enough to
    take its bytes instead of fetching: same size and ETag, and the ETag strong or the
    Last-Modified the same. A server that names no validator never matches."""
    if remote.size is None or size != remote.size or etag != remote.etag:
        return False
    strong = bool(etag) and not etag.startswith("W/")
    return strong or (bool(last_modified) and last_modified == remote.last_modified)


def fetched_before(download: Download, remote: Remote) -> ModelFile | None:
    """A library file with the bytes that an earlier completed download of the same URL
    got, if the server still describes the same file (`same_file`) and it is not the
    hash this download expects otherwise."""
    earlier = (
        Download.objects.filter(url=download.url, state=DownloadState.COMPLETED)
        .exclude(pk=download.pk)
        .exclude(sha256="")
        .only("size", "etag", "last_modified", "sha256")
        .order_by("-finished_at")
    )
    if download.expected_sha256:
        earlier = earlier.filter(sha256=download.expected_sha256)
    for candidate in earlier:
        if same_file(remote, candidate.size, candidate.etag, candidate.last_modified):
            twin = file_with(candidate.sha256)
            if twin is not None:
                return twin
    return None
