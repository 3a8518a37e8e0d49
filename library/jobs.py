"""The library's worker jobs, queued by dotted path (`library/enqueue.py`), taking ids."""

from __future__ import annotations

from library import downloader


def run_download(download_id: int) -> str:
    """Fetch a download (or its next time slice of up to four minutes)."""
    return downloader.run(download_id)
