"""The servers app's worker jobs (queued by dotted path; see comfyweb/schedules.py)."""

from __future__ import annotations

from servers.containers import lifecycle, tending


def tend_pools() -> str:
    """The container scheduler: adopt what the engines run, then tend every pool."""
    return tending.run_job()


def remove_container(container_id: int, reason: str) -> bool:
    """A staff "remove": out of the fleet at once, its prompts retried elsewhere."""
    removed = lifecycle.remove_now(container_id, reason)
    tending.wake()  # the pool may want a replacement
    return removed
