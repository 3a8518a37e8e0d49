"""The one seam from the monitor to the work: `WorkHooks`, registered by the tasks app.

`servers` does not import `tasks`. The monitor hands what concerns the work to
the hooks registered here (`TasksConfig.ready()` registers
`tasks.execution.TaskEventHandler`), one instance per monitor:

- `handle(server_id, event)`: every event that names a prompt, plus `Reconnected`
  and `Disconnected` (after which whoever tracks prompts must reconcile from
  /history and /queue), one after the other for each server;
- `arrived(server_id, event)`: every event of the server as it comes off the
  socket, before `handle` has got through the ones ahead of it (each may wait on
  the database): for what must not wait, like a prompt's end freeing its slot.
  Sync, quick, no database;
- `tick()`: every monitor tick (2 s), for work that no event starts (timers, sweeps);
- `server_can_take_work(server_id)`: the server was re-admitted or its nodes and
  models are known now, so pending work may go there (wake dispatch);
- `server_needs_reconcile(server_id)`: the monitor may have missed events of the
  server's prompts (first connection since it started) or they are lost unless it
  comes back (marked unhealthy, or its container is gone);
- `others_prompts_on(server_id, client_id)`: whether prompts sent with another
  client id than the watcher's own are on the server (sent while another monitor
  leased it): their events go elsewhere, so the watcher has them reconciled as the
  server's queue changes;
- `pending_work()`: the work waiting for a server, as (requirements, how many):
  the container scheduler (`servers.containers.tending`) sizes pools by it;
- `collecting_by_server()`: server id -> tasks whose prompt is done there (its
  slot is free) but whose outputs are still being fetched: the scheduler does not
  take such a container for idle.

The last five are sync (the monitor calls them through `database_sync_to_async`)
and must not raise: a broker outage must not stop the monitor's loops.
There is no default: the monitor runs only beside the tasks app.
"""

from __future__ import annotations

from collections.abc import Callable

from django.core.exceptions import ImproperlyConfigured

from servers.comfyui import Disconnected, Event, Reconnected
from servers.requirements import Requirements


class WorkHooks:
    """What the monitor calls; every method does nothing unless overridden."""

    async def handle(self, server_id: int, event: Event) -> None:
        pass

    def arrived(self, server_id: int, event: Event) -> None:
        pass

    async def tick(self) -> None:
        pass

    def server_can_take_work(self, server_id: int) -> None:
        pass

    def server_needs_reconcile(self, server_id: int) -> None:
        pass

    def others_prompts_on(self, server_id: int, client_id: str) -> bool:
        return False

    def pending_work(self) -> list[tuple[Requirements, int]]:
        return []

    def collecting_by_server(self) -> dict[int, int]:
        return {}


_factory: Callable[[], WorkHooks] | None = None


def register(factory: Callable[[], WorkHooks]) -> None:
    """Install what builds each monitor's hooks (a `WorkHooks` subclass will do)."""
    global _factory
    _factory = factory


def new_hooks() -> WorkHooks:
    """The registered hooks, fresh for one monitor."""
    if _factory is None:
        raise ImproperlyConfigured("no WorkHooks registered: the monitor needs the tasks app")
    return _factory()


def is_execution_event(event: Event) -> bool:
    return event.prompt_id is not None or isinstance(event, Reconnected | Disconnected)
