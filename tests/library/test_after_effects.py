"""What a download sets off beyond its own row: live updates on the "downloads" topic,
the servers that read the library told to refetch their model lists, and a worker
that starts picking up downloads left behind."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.core.cache import cache
from django.utils import timezone

from comfyweb import live
from comfyweb.signals import cluster_started
from library import downloader
from library.models import Download, DownloadState
from library.readers import library_changed
from library.requests import request_download
from servers.models import ServerKind
from servers.monitor.refresh import KEY
from tests.factories import capable_state, make_server, trivial_graph
from tests.range_server import MiB
from workflows.runnable import Unrunnable, require_runnable

pytestmark = pytest.mark.django_db(transaction=True)


async def test_progress_reaches_listeners_of_the_downloads_topic(
    range_server, models_dir, enqueued
):
    server = range_server(24 * MiB, rate=8 * MiB)
    secret = "Bearer s3cr3t"

    def fetch() -> Download:
        download = request_download(server.url(), "vae", headers={"Authorization": secret})
        downloader.run(download.pk)
        return Download.objects.get(pk=download.pk)

    messages = []
    async with live.listen("downloads") as listener:
        download = await database_sync_to_async(fetch)()
        with contextlib.suppress(TimeoutError):
            while True:
                async with asyncio.timeout(1.0):
                    messages.append(await listener.receive())
    data = [m["data"] for m in messages if m["type"] == "data.update"]
    ours = [d for d in data if d["id"] == download.pk]
    assert ours[0]["state"] == DownloadState.QUEUED
    assert ours[-1]["state"] == DownloadState.COMPLETED
    assert ours[-1]["sha256"] == server.content.sha256()
    running = [d["downloaded"] for d in ours if d["state"] == DownloadState.RUNNING]
    assert len(running) >= 2
    assert running == sorted(running)
    assert all(m["event"] == "download.progress" for m in messages if m["type"] == "data.update")
    assert "s3cr3t" not in str(messages)


def test_a_completed_download_has_the_servers_that_read_the_library_refetch(range_server, fetch):
    local = make_server("local-1", kind=ServerKind.LOCAL)
    container = make_server("container-1", kind=ServerKind.CONTAINER)
    static = make_server("static-1")
    disabled = make_server("local-off", kind=ServerKind.LOCAL, enabled=False)
    everyone = (local, container, static, disabled)
    cache.delete_many([KEY.format(s.pk) for s in everyone])  # ids of earlier runs

    download = fetch(range_server(MiB).url(), "loras")

    assert download.state == DownloadState.COMPLETED
    stamps = {s.name: cache.get(KEY.format(s.pk)) for s in everyone}
    assert stamps["local-1"] is not None
    assert stamps["container-1"] is not None
    assert stamps["static-1"] is None
    assert stamps["local-off"] is None


def test_work_needing_a_model_just_downloaded_is_accepted_before_the_monitor_refetches(
    range_server, fetch
):
    make_server("local-3", kind=ServerKind.LOCAL, state=capable_state())
    graph = trivial_graph()
    graph["1"]["inputs"]["ckpt_name"] = "fresh.safetensors"
    with pytest.raises(Unrunnable):
        require_runnable([graph])

    fetch(range_server(MiB).url("fresh.safetensors"), "checkpoints")

    # The monitor has not read the server's model list again: until it does, the
    # list is unknown, so the work waits for it instead of being refused.
    require_runnable([graph])


def test_a_failed_refresh_request_is_only_a_warning(monkeypatch, caplog):
    make_server("local-2", kind=ServerKind.LOCAL)

    def redis_down(ids):
        raise ConnectionError("redis is away")

    monkeypatch.setattr("library.readers.request_models_refresh", redis_down)
    library_changed()
    assert "model lists not refreshed" in caplog.text


def test_a_starting_worker_queues_the_downloads_left_behind(models_dir, enqueued):
    url = "http://127.0.0.1:9/files/{}"
    queued = request_download(url.format("a.bin"), "vae")
    dead = request_download(url.format("b.bin"), "vae")
    alive = request_download(url.format("c.bin"), "vae")
    finished = request_download(url.format("d.bin"), "vae")
    now = timezone.now()
    Download.objects.filter(pk=dead.pk).update(
        state=DownloadState.RUNNING,
        runner="elsewhere:1:x",
        heartbeat_at=now - timedelta(minutes=5),
    )
    Download.objects.filter(pk=alive.pk).update(
        state=DownloadState.RUNNING, runner="elsewhere:1:y", heartbeat_at=now
    )
    Download.objects.filter(pk=finished.pk).update(state=DownloadState.FAILED)
    enqueued.clear()

    cluster_started.send(sender=None)

    ours = [args[1] for args in enqueued if args[0] == "library.jobs.run_download"]
    assert sorted(ours) == sorted([queued.pk, dead.pk])
