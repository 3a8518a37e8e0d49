"""Queueing the library's job: the one dotted path, and a queue call that never raises."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

RUN_DOWNLOAD = "library.jobs.run_download"


def queue_download(download_id: int) -> bool:
    """Queue the download's job; False (and a warning) if the broker is away. The
    download stays queued: `resume_interrupted()` queues it again when a worker starts."""
    from django_q.tasks import async_task  # looked up per call: tests replace it

    try:
        async_task(RUN_DOWNLOAD, download_id, group="library")
    except Exception as error:
        logger.warning("download %s not queued (%s)", download_id, type(error).__name__)
        return False
    return True
