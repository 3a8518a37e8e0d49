"""Dispatch in the process that sees a slot free: the monitor.

A prompt's end reaches the monitor first. Waking dispatch through the broker
would cost two hops (Redis, then a worker process picking the job up) before
the next prompt is claimed; so the monitor runs dispatch passes itself, in one
thread of its own, and `enqueue.wake_dispatch()` in that process wakes the
thread instead of queueing a job. The claim lock keeps its passes and the
workers' (submissions still wake a worker) from claiming anything twice.

The thread is started by the `monitor_started` signal (`manage.py monitor`
sends it), never in tests that run a monitor in their own loop. A pass that
fails is handed to the workers, as every wake-up was before.
"""

from __future__ import annotations

import logging
import threading
from collections import deque

from django.db import close_old_connections

from tasks import enqueue

logger = logging.getLogger("tasks.dispatch")


class DispatchThread:
    """Runs `dispatch_pending()` whenever woken; wake-ups during a pass make one more."""

    def __init__(self) -> None:
        self._woken = threading.Event()
        self._stopping = False
        self._ended: deque[str] = deque()
        self._thread = threading.Thread(target=self._run, name="dispatch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._woken.set()

    def stop(self, timeout: float = 30.0) -> None:
        """End the thread once the pass under way is done (the monitor's runs until
        its process exits; a test's must not write while its database is flushed)."""
        self._stopping = True
        self._woken.set()
        self._thread.join(timeout)

    def prompt_ended(self, prompt_id: str) -> None:
        """Give the prompt's slot back and dispatch, from this thread: the monitor's
        own database work (progress, state changes) queues on one thread, and the
        next prompt should not wait behind it."""
        self._ended.append(prompt_id)
        self._woken.set()

    def _run(self) -> None:
        from tasks.dispatch import dispatch_pending
        from tasks.transitions import free_slot

        while True:
            self._woken.wait()
            self._woken.clear()
            if self._stopping:
                return
            close_old_connections()  # as a request or a job would start
            try:
                while self._ended:
                    # Whoever frees it first wins (a conditional UPDATE); the
                    # monitor's own `prompt_succeeded` then finds it done.
                    free_slot(None, self._ended.popleft())
                dispatch_pending()
            except Exception:
                logger.exception("in-process dispatch failed; the workers take over")
                enqueue.enqueue(enqueue.DISPATCH, group="dispatch")
            finally:
                close_old_connections()


_thread: DispatchThread | None = None


def prompt_ended(prompt_id: str) -> None:
    """A prompt of ours ended well on its server; in the monitor's process, free its
    slot and dispatch at once (elsewhere nothing: `sweep.prompt_succeeded` does)."""
    if _thread is not None:
        _thread.prompt_ended(prompt_id)


def start(**_: object) -> None:
    """`monitor_started` receiver: dispatch from this process from now on."""
    global _thread
    if _thread is None:
        _thread = DispatchThread()
        _thread.start()
        enqueue.dispatch_here(_thread.wake)
        _thread.wake()  # what waited while no monitor ran
