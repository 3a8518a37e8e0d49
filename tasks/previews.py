"""The latest live preview image of each running task (A6), kept briefly in the cache.

Previews are throw-away: only the newest per task is kept, for a short time,
in the shared cache (so the web process can serve what the monitor received).
With the cache (Redis) down there is no preview; nothing else fails for it.
The version number changes with every image so browsers fetch the new one.
It is also kept under a key of its own, so a list of tasks (the task list's
rows, the dashboard's recent results) learns which have a preview without
reading their images.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from django.core.cache import cache

logger = logging.getLogger(__name__)

TIMEOUT = 120  # seconds; a preview older than that is of a task long past
MAX_BYTES = 4 * 1024 * 1024
MIME_TYPES = frozenset({"image/png", "image/jpeg", "image/webp"})


def _key(task_id: int) -> str:
    return f"task-preview:{task_id}"


def _version_key(task_id: int) -> str:
    return f"task-preview-version:{task_id}"


def store(task_id: int, mime_type: str, image: bytes) -> int | None:
    """Keep `image` as the task's latest preview; its version, or None if refused."""
    if mime_type not in MIME_TYPES or not image or len(image) > MAX_BYTES:
        return None
    version = time.time_ns() // 1000  # survives a monitor restart, unlike a counter
    try:
        cache.set_many(
            {_key(task_id): (version, mime_type, image), _version_key(task_id): version}, TIMEOUT
        )
    except Exception:
        logger.warning("could not keep the preview of task %s", task_id, exc_info=True)
        return None
    return version


def latest(task_id: int) -> tuple[int, str, bytes] | None:
    """(version, mime type, bytes) of the newest preview, if there is one."""
    try:
        value = cache.get(_key(task_id))
    except Exception:
        logger.warning("could not read the preview of task %s", task_id, exc_info=True)
        return None
    return value if isinstance(value, tuple) and len(value) == 3 else None


def latest_version(task_id: int) -> int | None:
    value = latest(task_id)
    return value[0] if value else None


def versions(task_ids: Iterable[int]) -> dict[int, int]:
    """Task id → the version of its newest preview, for those that have one (one
    round trip, no image read)."""
    keys = {_version_key(task_id): task_id for task_id in task_ids}
    if not keys:
        return {}
    try:
        found = cache.get_many(list(keys))
    except Exception:
        logger.warning("could not read preview versions", exc_info=True)
        return {}
    return {keys[key]: value for key, value in found.items() if isinstance(value, int)}


def discard(task_id: int) -> None:
    try:
        cache.delete_many([_key(task_id), _version_key(task_id)])
    except Exception:  # it expires by itself
        logger.warning("could not discard the preview of task %s", task_id, exc_info=True)
