"""The servers that read the library: told when it changed, so new files show up in
their model lists (and become runnable) at once instead of after the capabilities TTL.

Local installs are launched with the library as an extra model path and container
pools mount it, so those two kinds see a new file immediately; static servers have
their own disks and are left alone.
"""

from __future__ import annotations

import logging

from servers.models import Server, ServerKind, ServerState
from servers.monitor.refresh import request_models_refresh

logger = logging.getLogger(__name__)

READER_KINDS = (ServerKind.LOCAL, ServerKind.CONTAINER)


def reader_ids() -> list[int]:
    return list(Server.objects.enabled().filter(kind__in=READER_KINDS).values_list("pk", flat=True))


def library_changed() -> None:
    """Their model lists are out of date until the monitor refetches them: say so
    (capabilities unknown, so work that needs the new file is accepted to wait
    instead of refused as unrunnable in the second before the refetch), then ask
    for the refetch. Best effort: without it the monitor still refetches when the
    TTL runs out."""
    readers = reader_ids()
    ServerState.objects.filter(server_id__in=readers).update(capabilities_at=None)
    try:
        request_models_refresh(readers)
    except Exception as error:
        logger.warning("model lists not refreshed (%s)", type(error).__name__)
