"""The downloader against a real local HTTP server (tests/range_server.py): ranges
in parallel at the right offsets, what the server says about itself, its faults,
the headers' scope, verification, cancelling, retrying and time slices."""

from __future__ import annotations

import hashlib
import logging

import pytest

from library import downloader, store
from library.hostlimit import HOST_LIMIT
from library.models import Download, DownloadRange, DownloadState, ModelFile
from library.requests import cancel, request_download, retry
from tests.library.conftest import concurrent_database, run_in_background, wait_for
from tests.range_server import Faults, MiB

pytestmark = pytest.mark.django_db(transaction=True)

RANGE = store.RANGE_SIZE


def range_gets(server, listener: str = "origin"):
    return [r for r in server.requests if r.method == "GET" and r.listener == listener]


def test_ranges_are_fetched_in_parallel_and_written_at_their_offsets(range_server, fetch):
    size = 5 * RANGE + 12345  # six ranges, the last one short
    server = range_server(size, rate=20 * MiB)
    download = fetch(server.url("sd15.safetensors"), connections=4)

    assert download.state == DownloadState.COMPLETED, download.error
    assert download.final_path.read_bytes() == server.content.read()
    assert download.sha256 == server.content.sha256()
    assert (download.size, download.downloaded) == (size, size)
    assert download.accepts_ranges is True
    assert download.etag == server.content.etag
    assert not download.part_path.exists()
    ranges = sorted(r.headers["range"] for r in range_gets(server))
    expected = sorted(
        f"bytes={start}-{min(start + RANGE, size) - 1}" for start in range(0, size, RANGE)
    )
    assert ranges == expected
    assert all(r.headers["if-range"] == server.content.etag for r in range_gets(server))
    assert server.max_active == 4  # the probe is over before the ranges start
    assert server.bytes_served == size
    model_file = ModelFile.objects.get(folder="checkpoints", filename="sd15.safetensors")
    assert (model_file.size, model_file.sha256) == (size, download.sha256)
    assert not DownloadRange.objects.filter(download=download).exists()


def test_connections_are_bounded_per_download_and_per_host(range_server, fetch, monkeypatch):
    # 12 ranges, each long beside the hand-over of a host slot (a Redis round trip or two).
    monkeypatch.setattr(store, "RANGE_SIZE", MiB)
    server = range_server(12 * MiB, rate=8 * MiB)
    download = fetch(server.url(), connections=16)
    assert download.state == DownloadState.COMPLETED, download.error
    assert download.sha256 == server.content.sha256()
    assert server.max_active == HOST_LIMIT == 8

    other = range_server(4 * MiB, rate=8 * MiB)
    download = fetch(other.url(), folder="loras", connections=2)
    assert download.state == DownloadState.COMPLETED
    assert other.max_active == 2


def test_a_server_without_ranges_gets_one_plain_stream(range_server, fetch):
    server = range_server(3 * MiB + 7, faults=Faults(no_ranges=True))
    download = fetch(server.url())
    assert download.state == DownloadState.COMPLETED, download.error
    assert download.final_path.read_bytes() == server.content.read()
    assert download.accepts_ranges is False
    # The probe's one-byte GET learns that ranges are ignored; then one whole GET.
    gets = range_gets(server)
    assert [g.headers.get("range") for g in gets] == ["bytes=0-0", None]


def test_a_file_of_unknown_size_is_one_stream(range_server, fetch):
    server = range_server(2 * MiB + 1, faults=Faults(unknown_size=True))
    download = fetch(server.url())
    assert download.state == DownloadState.COMPLETED, download.error
    assert download.final_path.read_bytes() == server.content.read()
    assert download.size == 2 * MiB + 1  # known once it is all there


def test_a_refused_head_is_replaced_by_a_one_byte_get(range_server, fetch):
    server = range_server(RANGE + 5, faults=Faults(head_refused=True))
    download = fetch(server.url(), connections=2)
    assert download.state == DownloadState.COMPLETED, download.error
    assert download.sha256 == server.content.sha256()
    assert [r.method for r in server.requests][:2] == ["HEAD", "GET"]
    assert server.requests[1].headers["range"] == "bytes=0-0"
    assert download.accepts_ranges is True


def test_retry_after_of_a_503_is_honoured_then_the_range_succeeds(range_server, fetch):
    server = range_server(3 * MiB, faults=Faults(busy=1, retry_after="1"))
    download = fetch(server.url(), connections=1)
    assert download.state == DownloadState.COMPLETED, download.error
    assert download.sha256 == server.content.sha256()
    busy, again = range_gets(server)
    assert busy.status == 503
    assert again.status == 206
    assert again.headers["range"] == busy.headers["range"]
    assert again.at - busy.at >= 1.0


@pytest.mark.parametrize(
    ("status", "says"), [(401, "token"), (403, "token"), (404, "no such file")]
)
def test_refused_access_fails_at_once_without_retries(range_server, fetch, status, says):
    server = range_server(MiB, faults=Faults(status=status))
    download = fetch(server.url())
    assert download.state == DownloadState.FAILED
    assert f"HTTP {status}" in download.error
    assert says in download.error
    if status == 401:
        assert "Authorization header" in download.error
    # One HEAD (a 403 may be a host that signs GETs only: one ranged GET to be sure).
    assert len(server.requests) == (2 if status == 403 else 1)
    assert download.finished_at is not None


def test_a_dropped_connection_resumes_the_range_from_its_done_bytes(range_server, fetch):
    size = 2 * RANGE
    server = range_server(size, faults=Faults(drops=2, drop_after=3 * MiB))
    download = fetch(server.url(), connections=2)
    assert download.state == DownloadState.COMPLETED, download.error
    assert download.sha256 == server.content.sha256()
    resumed = {r.headers["range"] for r in range_gets(server)}
    assert f"bytes={3 * MiB}-{RANGE - 1}" in resumed
    assert f"bytes={RANGE + 3 * MiB}-{size - 1}" in resumed
    assert server.bytes_served <= size + MiB  # the dropped parts are not fetched twice


def test_a_file_changed_on_the_server_mid_way_restarts_cleanly(range_server, fetch):
    size = 4 * RANGE
    server = range_server(size, rate=8 * MiB, faults=Faults(change_after=RANGE))
    download = fetch(server.url(), connections=2)
    assert download.state == DownloadState.COMPLETED, download.error
    assert server.content.seed == 2
    assert download.final_path.read_bytes() == server.content.read()
    assert download.sha256 == server.content.sha256()
    assert download.etag == server.content.etag
    # Requests after the change carried the old ETag in If-Range and got the whole file.
    assert any(r.status == 200 and r.headers.get("if-range") for r in range_gets(server))


def test_a_hash_mismatch_fails_with_both_hashes_and_leaves_nothing(range_server, fetch):
    server = range_server(RANGE + 99)
    wrong = "0" * 64
    download = fetch(server.url(), sha256=wrong)
    assert download.state == DownloadState.FAILED
    actual = server.content.sha256()
    assert wrong in download.error
    assert actual in download.error
    assert download.sha256 == ""
    assert not download.final_path.exists()
    assert not download.part_path.exists()
    assert not ModelFile.objects.exists()
    assert not DownloadRange.objects.filter(download=download).exists()


def test_an_expected_hash_that_matches_completes(range_server, fetch):
    server = range_server(RANGE + 99)
    download = fetch(server.url(), sha256=server.content.sha256().upper())
    assert download.state == DownloadState.COMPLETED, download.error
    assert download.sha256 == download.expected_sha256 == server.content.sha256()


def test_custom_headers_go_to_the_origin_only_not_after_a_redirect_to_another_host(
    range_server, fetch, caplog
):
    caplog.set_level(logging.DEBUG)
    server = range_server(2 * RANGE + 3, faults=Faults(redirect=True))
    secret = "Bearer hf_s3cr3t-token"
    download = fetch(server.url(), headers={"Authorization": secret, "X-Team": "t1"})
    assert download.state == DownloadState.COMPLETED, download.error
    assert download.sha256 == server.content.sha256()
    origin = [r for r in server.requests if r.listener == "origin"]
    other = [r for r in server.requests if r.listener == "other"]
    # The probe and each of the 3 ranges start at the origin, with the headers...
    assert len(origin) == 4
    assert all(r.status == 302 for r in origin)
    assert all(r.headers.get("authorization") == secret for r in origin)
    assert all(r.headers.get("x-team") == "t1" for r in origin)
    assert len([r for r in origin if "range" in r.headers]) == 3
    # ...and are followed to 127.0.0.2 without them (Range and If-Range kept).
    assert len(other) == 4
    assert all("authorization" not in r.headers and "x-team" not in r.headers for r in other)
    assert len([r for r in other if r.status == 206 and "if-range" in r.headers]) == 3
    assert "s3cr3t" not in caplog.text
    assert "HTTP Request" not in caplog.text  # httpx's line with the whole URL
    assert "completed" in caplog.text  # the downloader's own lines
    assert "s3cr3t" not in str(download)


@concurrent_database
def test_cancel_stops_a_running_download_and_removes_the_part(range_server, models_dir, enqueued):
    server = range_server(4 * RANGE, rate=2 * MiB)
    download = request_download(server.url(), "vae", connections=2)
    job = run_in_background(download)
    wait_for(lambda: Download.objects.get(pk=download.pk).downloaded > 0, what="progress")
    assert download.part_path.exists()
    cancel(download)
    assert job.join() == "canceled"
    download.refresh_from_db()
    assert download.state == DownloadState.CANCELED
    assert download.finished_at is not None
    assert not download.part_path.exists()
    assert not download.final_path.exists()
    assert not DownloadRange.objects.filter(download=download).exists()


def test_a_queued_download_is_canceled_at_once_and_its_job_does_nothing(
    range_server, models_dir, enqueued
):
    server = range_server(MiB)
    download = request_download(server.url(), "vae")
    assert enqueued == [("library.jobs.run_download", download.pk)]
    canceled = cancel(download)
    assert canceled.state == DownloadState.CANCELED
    assert downloader.run(download.pk) == "not claimed"
    assert server.requests == []


@concurrent_database
def test_a_failed_download_retried_resumes_from_its_part(range_server, models_dir, enqueued):
    size = 6 * RANGE
    server = range_server(size, rate=4 * MiB)
    download = request_download(server.url(), "unet", connections=2)
    job = run_in_background(download)
    done = DownloadRange.objects.filter(download=download, done=RANGE)
    wait_for(lambda: done.count() >= 2, what="two ranges done")
    server.faults.status = 403  # e.g. the token expired
    assert job.join() == "failed"
    download.refresh_from_db()
    assert "HTTP 403" in download.error
    assert download.part_path.exists()
    served, recorded = server.bytes_served, download.downloaded
    assert recorded >= 2 * RANGE

    server.faults.status = None
    enqueued.clear()
    assert retry(download).state == DownloadState.QUEUED
    assert enqueued == [("library.jobs.run_download", download.pk)]
    assert downloader.run(download.pk) == "completed"
    download.refresh_from_db()
    assert download.sha256 == server.content.sha256()
    # Only what was not recorded is fetched again, from where each range stopped.
    assert server.bytes_served - served == size - recorded
    assert server.bytes_served <= 1.3 * size


def test_only_failed_or_canceled_downloads_are_retried(range_server, models_dir, enqueued):
    download = request_download(range_server(MiB).url(), "vae")
    with pytest.raises(Exception, match="state"):
        retry(download)


def test_a_time_slice_requeues_with_progress_and_the_next_job_resumes(
    range_server, models_dir, enqueued
):
    size = 4 * RANGE
    server = range_server(size, rate=4 * MiB)
    download = request_download(server.url(), "loras", connections=2)
    enqueued.clear()
    assert downloader.run(download.pk, slice_seconds=1.5) == "requeued"
    download.refresh_from_db()
    assert download.state == DownloadState.QUEUED
    assert 0 < download.downloaded < size
    assert enqueued == [("library.jobs.run_download", download.pk)]
    assert downloader.run(download.pk) == "completed"
    download.refresh_from_db()
    assert download.sha256 == server.content.sha256()
    assert server.bytes_served <= 1.1 * size


def test_a_file_changed_between_two_jobs_starts_over(range_server, models_dir, enqueued):
    size = 3 * RANGE
    server = range_server(size, rate=4 * MiB)
    download = request_download(server.url(), "loras", connections=2)
    assert downloader.run(download.pk, slice_seconds=1.0) == "requeued"
    assert Download.objects.get(pk=download.pk).downloaded > 0
    server.state.content = type(server.content)(size, seed=7)
    server.set_rate(0)
    assert downloader.run(download.pk) == "completed"
    download.refresh_from_db()
    assert download.etag == server.content.etag
    assert download.final_path.read_bytes() == server.content.read()
    assert hashlib.sha256(download.final_path.read_bytes()).hexdigest() == download.sha256


def test_progress_is_published_at_most_twice_a_second_and_at_each_state(
    range_server, fetch, monkeypatch
):
    seen: list[tuple[str, int]] = []
    monkeypatch.setattr(
        downloader, "publish_progress", lambda d: seen.append((d.state, d.downloaded))
    )
    size = 4 * RANGE
    server = range_server(size, rate=6 * MiB)
    download = fetch(server.url(), connections=2)
    assert download.state == DownloadState.COMPLETED
    states = [state for state, _ in seen]
    assert states[-1] == DownloadState.COMPLETED
    assert DownloadState.VERIFYING in states
    running = [done for state, done in seen if state == DownloadState.RUNNING]
    assert running == sorted(running)
    assert len(set(running)) >= 3
    seconds = (download.finished_at - download.started_at).total_seconds()
    assert len(seen) <= 2 * seconds + 4
