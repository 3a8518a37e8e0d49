"""django-q2 jobs of the tasks app: plain functions queued by dotted path (STYLE habit 4).

Every job the worker runs for `tasks` is one of these functions; whatever queues
one takes its dotted path from `tasks.enqueue`, where `wake_dispatch()` lives.

- `tasks.jobs.dispatch` — on submit, when a slot frees or a server recovers
  (`wake_dispatch()`, re-exported here), and every minute as a safety net.
- `tasks.jobs.reconcile` — every minute: tasks on a server for longer than
  `COMFYWEB_RECONCILE_AFTER` seconds (and so, after a restart, every active one
  in time) are checked against the server's /queue and /history.
- `tasks.jobs.reconcile_server(server_id)` — after a monitor reconnect or a prompt
  that ended unseen, and when a dispatcher's lease on a task of the server ran out (`tasks.sweep`).
- `tasks.jobs.collect_outputs(task_id)` — when a prompt succeeded, and again
  from the monitor's sweep while the task waits for it (`tasks.sweep`).
"""

from __future__ import annotations

from tasks import dispatch as _dispatch
from tasks import enqueue as _enqueue
from tasks import outputs as _outputs
from tasks import reconcile as _reconcile
from tasks.enqueue import wake_dispatch

__all__ = ["collect_outputs", "dispatch", "reconcile", "reconcile_server", "wake_dispatch"]


def dispatch() -> int:
    """Send pending tasks until nothing more can go; how many were sent."""
    _enqueue.woken()
    return _dispatch.dispatch_pending()


def reconcile() -> dict[str, int]:
    """Check tasks that have been on a server too long; outcome counts."""
    return _reconcile.reconcile_stuck()


def reconcile_server(server_id: int) -> dict[str, int]:
    return _reconcile.reconcile_server(server_id)


def collect_outputs(task_id: int) -> int:
    """Fetch and store a finished task's outputs; how many were stored."""
    return _outputs.collect_outputs(task_id)
