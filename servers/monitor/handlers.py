"""Where execution events go: an interface the jobs issue implements.

The monitor hands every event that names a prompt, plus `Reconnected` and
`Disconnected` (after which whoever tracks prompts must reconcile from /history
and /queue), to the handler named by `settings.MONITOR_EXECUTION_HANDLER`.
A handler may also have `async def tick() -> None`, which the monitor's loop
calls every tick (2 s) for work that no event starts (timers, sweeps).
"""

from __future__ import annotations

import logging
from typing import Protocol, runtime_checkable

from django.conf import settings
from django.utils.module_loading import import_string

from servers.comfyui import Disconnected, Event, Reconnected

logger = logging.getLogger(__name__)

DEFAULT_HANDLER = "servers.monitor.handlers.LoggingHandler"


@runtime_checkable
class ExecutionHandler(Protocol):
    async def handle(self, server_id: int, event: Event) -> None: ...


class LoggingHandler:
    """Logs execution events until the jobs issue turns them into task progress."""

    async def handle(self, server_id: int, event: Event) -> None:
        logger.debug(
            "execution event %s from server %s",
            event.type,
            server_id,
            extra={"server_id": server_id, "event": event.type, "prompt_id": event.prompt_id},
        )


def is_execution_event(event: Event) -> bool:
    return event.prompt_id is not None or isinstance(event, Reconnected | Disconnected)


def load_handler(path: str | None = None) -> ExecutionHandler:
    """The configured handler: a dotted path to a class (instantiated) or an instance."""
    path = path or getattr(settings, "MONITOR_EXECUTION_HANDLER", None) or DEFAULT_HANDLER
    target = import_string(path)
    handler = target() if isinstance(target, type) else target
    if not isinstance(handler, ExecutionHandler):
        raise TypeError(f"{path} has no `async def handle(server_id, event)`")
    return handler
