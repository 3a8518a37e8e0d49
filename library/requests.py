"""What pages and the API call to get a model into the library: ask for a download,
cancel it, retry it. Validation happens here, on whatever the caller passes; the
work happens in the worker (`library.jobs.run_download`).
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from library import files, store
from library.enqueue import queue_download
from library.models import (
    ACTIVE_STATES,
    DEFAULT_CONNECTIONS,
    Download,
    DownloadState,
    ModelFile,
)
from library.progress import publish_progress
from library.readers import library_changed
from library.validation import filename_from_url, normalise_sha256

logger = logging.getLogger(__name__)

IN_LIBRARY = "a file of that name is already in the library"
BEING_FETCHED = "a download of that name is already under way"


def request_download(
    url: str,
    folder: str,
    filename: str | None = None,
    sha256: str | None = None,
    headers: dict[str, str] | None = None,
    connections: int | None = None,
) -> Download:
    """A new download of `url` into `folder`, queued for the worker; or, if the library
    already holds a file with the expected `sha256`, that file under the new name and
    the download completed at once. Raises ValidationError naming the fields."""
    download = Download(
        url=url.strip() if isinstance(url, str) else url,
        folder=folder,
        filename=filename or (filename_from_url(url) if isinstance(url, str) else ""),
        headers={} if headers is None else headers,
        expected_sha256=normalise_sha256(sha256) if isinstance(sha256, str | None) else sha256,
        connections=DEFAULT_CONNECTIONS if connections is None else connections,
    )
    try:
        download.full_clean(validate_constraints=False)
    except ValidationError as error:
        raise ValidationError(error.message_dict) from None
    existing = ModelFile.objects.filter(folder=download.folder, filename=download.filename).first()
    if existing is not None or download.final_path.exists():
        if (
            existing is not None
            and download.expected_sha256
            and existing.sha256 == download.expected_sha256
        ):
            return _completed(download, existing)
        raise ValidationError({"filename": [IN_LIBRARY]})
    if download.expected_sha256:
        twin = store.file_with(download.expected_sha256)
        if twin is not None:
            return _linked(download, twin)
    try:
        with transaction.atomic():
            download.save()
            transaction.on_commit(lambda: _queued(download.pk))
    except IntegrityError:
        raise ValidationError({"filename": [BEING_FETCHED]}) from None
    return download


def _completed(download: Download, model_file: ModelFile, note: str = "") -> Download:
    now = timezone.now()
    download.state = DownloadState.COMPLETED
    download.error = note
    download.size = download.downloaded = model_file.size
    download.sha256 = model_file.sha256
    download.started_at = download.finished_at = now
    download.save()
    transaction.on_commit(lambda: publish_progress(download))
    return download


def _linked(download: Download, twin: ModelFile) -> Download:
    """The library has these bytes already: a hard link (or copy) under the new name."""
    try:
        linked = files.place_copy(twin.path, download.final_path)
    except FileExistsError:
        raise ValidationError({"filename": [IN_LIBRARY]}) from None
    with transaction.atomic():
        model_file = ModelFile.objects.create(
            folder=download.folder, filename=download.filename, size=twin.size, sha256=twin.sha256
        )
        _completed(download, model_file, store.copy_note(twin, linked=linked))
        transaction.on_commit(library_changed)
    logger.info(
        "download %s: %s/%s is a copy of %s", download.pk, download.folder, download.filename, twin
    )
    return download


def _queued(download_id: int) -> None:
    queue_download(download_id)
    download = Download.objects.filter(pk=download_id).first()
    if download is not None:
        publish_progress(download)


def cancel(download: Download) -> Download:
    """Stop a download and throw its .part away. A running one stops within a second
    (its worker reads the request); one no worker holds ends here."""
    store.request_cancel(download.pk)
    if store.cancel_unclaimed(download.pk):
        files.remove_quietly(download.part_path)
    download.refresh_from_db()
    publish_progress(download)
    return download


def retry(download: Download) -> Download:
    """A failed or canceled download queued again; it resumes from its .part if the
    ranges recorded still match the file on the server."""
    try:
        with transaction.atomic():
            if not store.requeue_for_retry(download.pk):
                raise ValidationError({"state": ["only a failed or canceled download is retried"]})
            transaction.on_commit(lambda: _queued(download.pk))
    except IntegrityError:
        raise ValidationError({"filename": [BEING_FETCHED]}) from None
    download.refresh_from_db()
    return download


def resume_interrupted(**_: Any) -> int:
    """Queue every download that waits for a worker: queued ones (their job may have
    been lost with the broker) and those whose worker died. Run when a worker starts."""
    queued = 0
    for download in Download.objects.filter(state__in=ACTIVE_STATES):
        waiting = download.state == DownloadState.QUEUED or store.runner_gone(
            download.runner, download.heartbeat_at
        )
        if waiting and queue_download(download.pk):
            queued += 1
    return queued
