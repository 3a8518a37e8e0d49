"""Run a set of child processes as one unit: restart the ones that crash, stop all.

`manage.py serve` uses this for redis (embedded), web, worker and monitor. Each
child runs in its own process group so that stopping it also stops whatever it
forked (daphne's and qcluster's workers), and gets SIGTERM from the kernel if
the supervisor itself dies, so nothing outlives `serve`.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from comfyweb.backoff import Backoff

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: ask Linux to SIGTERM it when we exit."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:  # not Linux: stop() still cleans up on an orderly exit
        pass


@dataclass
class ChildSpec:
    name: str
    argv: Sequence[str]
    env: dict[str, str] | None = None
    # Blocks until the child serves (e.g. Redis answers); raises if it never does.
    wait_ready: Callable[[subprocess.Popen], None] | None = None
    # Infrastructure (Redis) is stopped only after every other child has exited.
    infrastructure: bool = False


@dataclass
class Child:
    spec: ChildSpec
    backoff: Backoff = field(default_factory=lambda: Backoff(base=1.0, cap=30.0, stable_after=30))
    process: subprocess.Popen | None = None
    restart_at: float | None = None
    restarts: int = 0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None


class Supervisor:
    """Use as a context manager: SIGINT/SIGTERM ask it to stop, leaving stops all.

    with Supervisor() as supervisor:
        supervisor.start(redis_spec)   # blocks until ready
        ...                            # set-up that needs it
        supervisor.start(web_spec)
        supervisor.watch()             # until a signal arrives
    """

    def __init__(
        self,
        *,
        stop_timeout: float = 8.0,
        poll_interval: float = 0.2,
        announce: Callable[[str], None] = print,
    ) -> None:
        self.children: list[Child] = []
        self.stop_timeout = stop_timeout
        self.poll_interval = poll_interval
        self.announce = announce
        self.stopping = False
        self._previous_handlers: dict[int, object] = {}

    def __enter__(self) -> Supervisor:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous_handlers[sig] = signal.signal(sig, self.request_stop)
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.stop_all()
        finally:
            for sig, handler in self._previous_handlers.items():
                signal.signal(sig, handler)

    def request_stop(self, signum: int | None = None, frame: object = None) -> None:
        self.stopping = True

    def start(self, spec: ChildSpec) -> Child:
        child = Child(spec)
        self.children.append(child)
        self._start(child)
        return child

    def watch(self) -> None:
        """Restart children that exit, with backoff, until asked to stop."""
        while not self.stopping:
            self._watch_once()
            time.sleep(self.poll_interval)

    def _start(self, child: Child) -> None:
        child.process = subprocess.Popen(  # noqa: S603 - argv built by serve, no shell
            list(child.spec.argv),
            env=child.spec.env,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # single-threaded parent, so preexec_fn is safe
        )
        child.restart_at = None
        child.backoff.succeeded()
        self.announce(f"started {child.spec.name} (pid {child.process.pid})")
        logger.info("child started", extra={"child": child.spec.name, "pid": child.process.pid})
        # Only the first start blocks: later children need this one up, but a
        # restart must not stall the watch loop of everything else.
        if child.spec.wait_ready is not None and child.restarts == 0:
            child.spec.wait_ready(child.process)

    def _watch_once(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.restarts += 1
                    self._start(child)
                continue
            code = child.process.poll() if child.process else None
            if code is None:
                continue
            # A leader that died abruptly can leave forked helpers behind (django-q's
            # sentinel keeps spawning workers): clear its group before a restart.
            _signal_group(child.process, signal.SIGKILL)
            delay = child.backoff.failed()
            child.restart_at = now + delay
            self.announce(f"{child.spec.name} exited with code {code}; restarting in {delay:.1f}s")
            logger.warning(
                "child exited",
                extra={"child": child.spec.name, "code": code, "restart_in": round(delay, 2)},
            )

    def stop_all(self) -> None:
        """Stop the applications, then the infrastructure they were using.

        Stopping Redis together with the worker would leave the worker retrying a
        dead broker until it is killed; stopping it afterwards lets every child
        shut down cleanly.
        """
        running = [c for c in self.children if c.process and c.process.poll() is None]
        apps = [c for c in running if not c.spec.infrastructure]
        infrastructure = [c for c in running if c.spec.infrastructure]
        self._stop_group(apps, timeout=self.stop_timeout * 0.75)
        self._stop_group(infrastructure, timeout=self.stop_timeout * 0.25)
        if running:
            self.announce("stopped " + ", ".join(c.spec.name for c in running))

    def _stop_group(self, children: list[Child], *, timeout: float) -> None:
        """SIGTERM each child, wait, then SIGKILL its whole process group.

        Only the leader gets SIGTERM: it shuts its own workers down in order
        (django-q's sentinel, for one, hangs if its workers are signalled too).
        """
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in children:
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("child ignored SIGTERM; killing", extra={"child": child.spec.name})
        for child in children:
            # The leader may be gone while forked workers linger in its group.
            _signal_group(child.process, signal.SIGKILL)
            if child.process.poll() is None:
                child.process.wait(timeout=5)


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)
