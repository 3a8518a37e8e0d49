"""The library's worker jobs, queued by dotted path (`library/enqueue.py`), taking ids."""

from __future__ import annotations

from library import downloader, requests


def run_download(download_id: int) -> str:
    """Fetch a download (or its next time slice of up to four minutes)."""
    return downloader.run(download_id)


def resume_downloads() -> int:
    """Every minute: queue again the downloads whose job was lost (a broker blip) or whose
    worker died, as a starting worker does (claims are compare-and-set: a second job for a
    download that runs finds it taken and ends)."""
    return requests.resume_interrupted()
