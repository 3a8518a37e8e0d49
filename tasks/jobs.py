"""django-q2 jobs of the tasks app: plain functions queued by dotted path (STYLE habit 4).

- `tasks.jobs.dispatch` — on submit, when a slot frees or a server recovers
  (`tasks.dispatch.wake_dispatch()`), and every minute as a safety net.
- `tasks.jobs.reconcile` — every minute: tasks stuck on a server too long, and
  after a restart; `tasks.jobs.reconcile_server(server_id)` after a monitor reconnect.
"""

from __future__ import annotations

from tasks import dispatch as _dispatch


def dispatch() -> int:
    _dispatch.woken()
    return _dispatch.dispatch_pending()
