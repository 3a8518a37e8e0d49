"""A worker killed mid-download (SIGKILL: nothing of it cleans up) leaves a .part and
its recorded ranges; the job run again takes the download over from the dead
runner and fetches only what was not recorded: at most 1.3x the file in all."""

from __future__ import annotations

import pytest
from django.db.models import F

from library import downloader
from library.models import Download, DownloadRange, DownloadState
from library.requests import request_download, resume_interrupted
from tests.django_process import DjangoProcess, shared_database
from tests.library.conftest import wait_for
from tests.range_server import MiB

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, shared_database]

RUN = (
    "import sys\nfrom library import downloader\nprint('outcome', downloader.run(int(sys.argv[1])))"
)


def test_a_killed_job_is_resumed_fetching_at_most_1_3_times_the_file(
    range_server, models_dir, enqueued
):
    size = 64 * MiB + 4321
    server = range_server(size, rate=4 * MiB)  # four connections: ~4 s in all
    download = request_download(server.url(), "checkpoints", connections=4)
    worker = DjangoProcess.python(RUN, str(download.pk), COMFYWEB_MODELS_DIR=str(models_dir))
    try:
        finished = DownloadRange.objects.filter(download=download, done=F("end") - F("start") + 1)
        wait_for(lambda: finished.count() >= 3, within=60, what="three ranges done")
    finally:
        worker.kill()
    killed = Download.objects.get(pk=download.pk)
    assert killed.state == DownloadState.RUNNING  # as the dead worker left it
    assert 3 * 8 * MiB <= killed.downloaded < size
    assert download.part_path.exists()

    # What a restarted worker does first: queue the downloads that wait for one.
    enqueued.clear()
    assert resume_interrupted() == 1
    assert enqueued == [("library.jobs.run_download", download.pk)]
    assert downloader.run(download.pk) == "completed"

    download.refresh_from_db()
    assert download.state == DownloadState.COMPLETED
    assert download.sha256 == server.content.sha256()
    assert download.final_path.read_bytes() == server.content.read()
    assert server.bytes_served <= 1.3 * size, server.bytes_served / size


def test_a_live_runner_is_not_taken_over(range_server, models_dir, enqueued):
    server = range_server(16 * MiB, rate=2 * MiB)
    download = request_download(server.url(), "checkpoints", connections=2)
    worker = DjangoProcess.python(RUN, str(download.pk), COMFYWEB_MODELS_DIR=str(models_dir))
    try:
        wait_for(lambda: Download.objects.get(pk=download.pk).downloaded > 0, what="progress")
        assert downloader.run(download.pk) == "not claimed"
        assert resume_interrupted() == 0
    finally:
        worker.kill()
