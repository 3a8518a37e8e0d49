"""The launcher: the one process that owns the local ComfyUI instances (L1).

`manage.py launcher` runs `Launcher.run()`: every half second (or when woken by
`servers.local.control`) one `tick()` moves each instance one step towards what
staff want, and reads its console. The launcher is a process of its own, so web
restarts never touch a running ComfyUI, and it may itself be restarted: what it
started keeps running and is adopted by the next launcher.

Who may be signalled: only a process group whose leader is proven to be the
process the launcher recorded (`servers.local.processes`); a process it cannot
prove is its own is left alone and the instance says so (ERROR).

Steps, per instance:
- start: refuse (ERROR) if the port is taken or there is nothing to run; else
  spawn `python main.py --listen 127.0.0.1 --port P --extra-model-paths-config F
  [args]` (or the start script with those flags), stdout and stderr appended to
  its log; STARTING until `/system_stats` answers, then RUNNING and its `Server`
  (kind local) enabled;
- stop: SIGTERM to the group, SIGKILL after the grace period; STOPPED;
- an exit nobody asked for: restarted after `comfyweb.backoff` (min(cap, base·2ⁿ)
  + jitter, n = crashes in a row), CRASHED after `crash_limit` in a row or at once
  without auto restart, the last log lines as its error.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection, transaction
from django.utils import timezone

from comfyweb.backoff import backoff_delay
from servers.local import console, fleet, heartbeat, logfile, modelpaths, panel, procs
from servers.local.control import WAKE_CHANNEL
from servers.local.models import (
    HALTED_STATES,
    LIVE_STATES,
    LocalInstance,
    LocalState,
    Wanted,
    local_dir,
)
from servers.local.processes import (
    LISTEN,
    Child,
    child_env,
    comfyui_answers,
    describe_exit,
    launch_command,
    proven_ours,
)

logger = logging.getLogger("servers.local")


@dataclass(frozen=True)
class LauncherConfig:
    tick: float = 0.5
    stop_grace: float = 10.0  # seconds between SIGTERM and SIGKILL
    # When ComfyWeb stops: `serve` kills the launcher 6 s after asking it to stop,
    # and its instances (sessions of their own) would outlive it.
    shutdown_grace: float = 4.0
    startup_cap: float = 900.0  # a ComfyUI importing many custom nodes takes minutes
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    backoff_jitter: float = 0.5
    crash_limit: int = 5  # crashes in a row before it is left CRASHED
    stable_after: float = 60.0  # running this long clears the crashes in a row
    log_max_bytes: int = 5 * 1024 * 1024
    log_backups: int = 3
    error_lines: int = 30
    root: Path = field(default_factory=local_dir)
    models_dir: Path | None = None

    @classmethod
    def from_settings(cls, **overrides: object) -> LauncherConfig:
        def setting(name: str, default: object) -> object:
            return getattr(settings, f"COMFYWEB_LOCAL_{name}", default)

        values = {
            "stop_grace": float(setting("STOP_GRACE", cls.stop_grace)),
            "startup_cap": float(setting("STARTUP_CAP", cls.startup_cap)),
            "backoff_base": float(setting("BACKOFF_BASE", cls.backoff_base)),
            "backoff_cap": float(setting("BACKOFF_CAP", cls.backoff_cap)),
            "backoff_jitter": float(setting("BACKOFF_JITTER", cls.backoff_jitter)),
            "crash_limit": int(setting("CRASH_LIMIT", cls.crash_limit)),
            "stable_after": float(setting("STABLE_AFTER", cls.stable_after)),
        }
        return cls(**(values | overrides))


class Launcher:
    def __init__(self, config: LauncherConfig | None = None) -> None:
        self.config = config or LauncherConfig.from_settings()
        self.children: dict[int, Child] = {}
        self.closing = False
        self._lock_file = None

    # -- the loop ---------------------------------------------------------------------

    def run(self, stop: Callable[[], bool], *, leave_running: bool = False) -> None:
        """Tick until `stop()` is true, then stop every instance (unless
        `leave_running`: the next launcher adopts them)."""
        self.acquire_lock(stop)
        if stop():
            return
        self.autostart()
        waker = _Waker()
        try:
            while not stop():
                try:
                    self.tick()
                except DatabaseError as error:  # the children run on; the next tick retries
                    logger.warning("instances not read: %s", error)
                self._beat()
                waker.wait(self.config.tick)
        finally:
            waker.close()
            self._beat(stopping=True)
            if not leave_running:
                self.shutdown()

    def _beat(self, *, stopping: bool = False) -> None:
        """/healthz sees this launcher (`servers.local.heartbeat`); a Redis blip costs a beat."""
        try:
            if stopping:
                heartbeat.clear_heartbeat()
            else:
                heartbeat.write_heartbeat(len(self.children), self.config.tick)
        except Exception as error:
            logger.warning("launcher heartbeat not written: %s", error)

    def acquire_lock(self, stop: Callable[[], bool]) -> None:
        """One launcher per data directory: two would both start every instance. The
        kernel drops the lock when its holder dies, however it dies."""
        self.config.root.mkdir(parents=True, exist_ok=True)
        self._lock_file = (self.config.root / "launcher.lock").open("a+")
        said = False
        while not stop():
            try:
                fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if not said:
                    logger.warning("another launcher runs on %s; waiting", self.config.root)
                    said = True
                time.sleep(1.0)

    def autostart(self) -> None:
        """ComfyWeb starts: instances marked autostart are wanted running, and one
        that crashed or was refused last time gets a fresh try."""
        autostarting = LocalInstance.objects.filter(autostart=True)
        autostarting.filter(state__in=HALTED_STATES).update(
            state=LocalState.STOPPED, consecutive_crashes=0, next_start_at=None, pid=None
        )
        autostarting.update(wanted=Wanted.RUNNING)

    def tick(self) -> None:
        """One look at every instance, then at every console."""
        if not connection.in_atomic_block:  # (a test's transaction is not to be closed)
            close_old_connections()  # a long-lived process: a dropped connection is replaced
        now = timezone.now()
        instances = {i.pk: i for i in LocalInstance.objects.select_related("server")}
        for instance_id in list(self.children):
            if instance_id not in instances:
                self._tend_deleted(self.children[instance_id])
        for instance in instances.values():
            try:
                self._tend(instance, now)
            except Exception:  # one instance's trouble never stops the others
                logger.exception("instance %s: tending failed", instance.name)
        self._read_consoles()

    def shutdown(self) -> None:
        """ComfyWeb stops: every instance stops (SIGTERM, SIGKILL after the grace).
        Those not marked autostart stay stopped next time."""
        self.closing = True
        running = set(self.children)
        deadline = time.monotonic() + self._grace() + 5.0
        while self.children and time.monotonic() < deadline:
            self.tick()
            time.sleep(0.1)
        LocalInstance.objects.filter(pk__in=running, autostart=False).update(wanted=Wanted.STOPPED)

    def _grace(self) -> float:
        if self.closing:
            return min(self.config.stop_grace, self.config.shutdown_grace)
        return self.config.stop_grace

    # -- one instance -----------------------------------------------------------------

    def _tend(self, instance: LocalInstance, now: datetime) -> None:
        child = self.children.get(instance.pk)
        if child is None and instance.state in LIVE_STATES and instance.pid:
            # Started by an earlier launcher (we just started): adopt it or not.
            self._adopt(instance, now)
            child = self.children.get(instance.pk)
            if child is None:
                return
        if child is not None:
            self._tend_child(instance, child, now)
            return
        wanted_running = instance.wanted == Wanted.RUNNING and not self.closing
        if instance.restart_requested_at is not None:
            # Nothing runs: a restart is a start (or nothing, if stopped meanwhile).
            LocalInstance.objects.filter(
                pk=instance.pk, restart_requested_at=instance.restart_requested_at
            ).update(restart_requested_at=None)
        if instance.state in HALTED_STATES:
            return
        if wanted_running and instance.state in (LocalState.STOPPED, LocalState.STARTING):
            if instance.next_start_at is None or now >= instance.next_start_at:
                self._start(instance, now)
        elif instance.state != LocalState.STOPPED and not wanted_running:
            # Waiting to restart after a crash, and stopped meanwhile.
            LocalInstance.objects.filter(pk=instance.pk, pid__isnull=True).update(
                state=LocalState.STOPPED, next_start_at=None
            )

    def _tend_child(self, instance: LocalInstance, child: Child, now: datetime) -> None:
        exited, code = child.exit_status()
        if exited:
            self._exited(instance, child, code, now)
            return
        if child.stop_deadline is not None:
            if not child.killed and time.monotonic() >= child.stop_deadline:
                child.killed = True
                child.signal(signal.SIGKILL)
                self._note(
                    instance,
                    f"did not stop within {self._grace():g} s: SIGKILL to process "
                    f"group {child.pid}",
                )
            return
        if self.closing:
            self._begin_stop(instance, child, "ComfyWeb is stopping")
        elif instance.wanted == Wanted.STOPPED:
            self._begin_stop(instance, child, "asked to stop")
        elif instance.restart_requested_at is not None:
            claimed = LocalInstance.objects.filter(
                pk=instance.pk, restart_requested_at=instance.restart_requested_at
            ).update(restart_requested_at=None)
            if claimed:
                self._begin_stop(instance, child, "asked to restart")
        elif instance.state == LocalState.STARTING:
            self._watch_starting(instance, child, now)
        elif instance.state == LocalState.RUNNING:
            self._watch_running(instance, now)
        elif instance.state == LocalState.STOPPING:  # recorded, never signalled
            self._begin_stop(instance, child, "it was recorded as stopping")
        else:
            # Its start was not recorded (the database failed after the spawn): record it.
            LocalInstance.objects.filter(pk=instance.pk).update(
                state=LocalState.STARTING,
                pid=child.pid,
                process_started=child.starttime,
                started_at=now,
                log_path=str(child.tail.path),
            )

    def _start(self, instance: LocalInstance, now: datetime) -> None:
        automatic = instance.state == LocalState.STARTING and instance.next_start_at is not None
        launch = launch_command(instance)
        if isinstance(launch, str):
            self._refuse(instance, launch)
            return
        argv, cwd = launch
        if not procs.port_free(instance.port, LISTEN):
            self._refuse(instance, f"port {instance.port} is in use by another process")
            return
        root = self.config.root
        config_file = modelpaths.write(
            root / f"{instance.name}.extra_model_paths.yaml", self.config.models_dir
        )
        argv += ["--extra-model-paths-config", str(config_file), *instance.args]
        log_path = root / f"{instance.name}.log"
        tail = logfile.LogTail.at_end(log_path)
        logfile.write_note(log_path, f"starting: {shlex.join(argv)} (in {cwd})")
        log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            popen = subprocess.Popen(  # noqa: S603 - argv from validated fields, no shell
                argv,
                cwd=cwd,
                env=child_env(instance),
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a process group of its own: stopped as a whole
            )
        except OSError as error:
            self._refuse(instance, f"could not run {argv[0]}: {error.strerror or error}")
            return
        finally:
            os.close(log_fd)
        starttime = procs.start_time(popen.pid) or 0
        self.children[instance.pk] = Child(
            instance.pk, instance.name, popen.pid, starttime, instance.port, tail, popen=popen
        )
        LocalInstance.objects.filter(pk=instance.pk).update(
            state=LocalState.STARTING,
            pid=popen.pid,
            process_started=starttime,
            started_at=now,
            exit_code=None,
            log_path=str(log_path),
            **({"restarts": instance.restarts + 1} if automatic else {"error": ""}),
        )
        logger.info("instance %s started: pid %s, port %s", instance.name, popen.pid, instance.port)

    def _refuse(self, instance: LocalInstance, reason: str) -> None:
        """Nothing was spawned, and nothing will be until staff ask again."""
        LocalInstance.objects.filter(pk=instance.pk).update(
            state=LocalState.ERROR, error=reason, pid=None, process_started=None
        )
        self._note(instance, f"not started: {reason}")
        logger.warning("instance %s not started: %s", instance.name, reason)

    def _watch_starting(self, instance: LocalInstance, child: Child, now: datetime) -> None:
        if comfyui_answers(child.port):
            self._promote(instance, child)
            return
        started = instance.started_at or now
        if (now - started).total_seconds() > self.config.startup_cap:
            child.failure = (
                f"ComfyUI did not answer on port {child.port} within {self.config.startup_cap:g} s"
            )
            self._begin_stop(instance, child, child.failure)

    def _promote(self, instance: LocalInstance, child: Child) -> None:
        with transaction.atomic():
            server = fleet.enable_server(instance, child.port, fresh=True)
            LocalInstance.objects.filter(pk=instance.pk, state=LocalState.STARTING).update(
                state=LocalState.RUNNING, server=server, error=""
            )
        self._note(instance, f"ComfyUI answers on port {child.port}: server {server.name}")
        logger.info("instance %s running as server %s", instance.name, server.name)

    def _watch_running(self, instance: LocalInstance, now: datetime) -> None:
        started = instance.started_at or now
        if instance.consecutive_crashes and (
            (now - started).total_seconds() >= self.config.stable_after
        ):
            LocalInstance.objects.filter(pk=instance.pk).update(consecutive_crashes=0)

    def _begin_stop(self, instance: LocalInstance, child: Child, reason: str) -> None:
        if child.adopted and child.is_ours():
            child.members = procs.group_members(child.pid)
        child.signal(signal.SIGTERM)
        child.stop_deadline = time.monotonic() + self._grace()
        LocalInstance.objects.filter(pk=instance.pk, state__in=LIVE_STATES).update(
            state=LocalState.STOPPING
        )
        fleet.lose_server(instance.server_id)
        self._note(instance, f"stopping ({reason}): SIGTERM to process group {child.pid}")

    def _exited(
        self, instance: LocalInstance, child: Child, code: int | None, now: datetime
    ) -> None:
        self._read_console(child)
        # Whatever it left in its group goes too, before its zombie is reaped and
        # the group id may be reused.
        child.signal(signal.SIGKILL)
        child.reap()
        del self.children[instance.pk]
        fleet.lose_server(instance.server_id)
        gone = {"pid": None, "process_started": None, "exited_at": now, "exit_code": code}
        if child.failure:
            self._halt(instance, child.failure, gone)
        elif child.stop_deadline is not None:
            LocalInstance.objects.filter(pk=instance.pk).update(
                state=LocalState.STOPPED, consecutive_crashes=0, **gone
            )
            self._note(instance, f"stopped ({describe_exit(code)})")
        else:
            self._crashed(instance, code, now, gone)

    def _crashed(self, instance: LocalInstance, code: int | None, now: datetime, gone) -> None:
        crashes = instance.consecutive_crashes + 1
        what = f"ComfyUI {describe_exit(code)}"
        if not instance.auto_restart:
            self._halt(instance, what, gone | {"consecutive_crashes": crashes})
        elif crashes >= self.config.crash_limit:
            self._halt(
                instance,
                f"{what}: {crashes} crashes in a row, not restarted again",
                gone | {"consecutive_crashes": crashes},
            )
        else:
            delay = backoff_delay(
                crashes - 1,
                base=self.config.backoff_base,
                cap=self.config.backoff_cap,
                jitter=self.config.backoff_jitter,
            )
            reason = f"{what} (crash {crashes} in a row); restart after {delay:.1f} s"
            LocalInstance.objects.filter(pk=instance.pk).update(
                state=LocalState.STARTING,
                error=reason,
                consecutive_crashes=crashes,
                next_start_at=now + timedelta(seconds=delay),
                **gone,
            )
            self._note(instance, reason)
            logger.warning("instance %s: %s", instance.name, reason)

    def _halt(self, instance: LocalInstance, reason: str, gone: dict) -> None:
        """CRASHED, with its last log lines: left alone until staff start it again."""
        log_path = Path(instance.log_path or instance.default_log_path())
        tail = "\n".join(logfile.last_lines(log_path, self.config.error_lines))
        error = f"{reason}; its last log lines:\n{tail}" if tail else reason
        LocalInstance.objects.filter(pk=instance.pk).update(
            state=LocalState.CRASHED, error=error, next_start_at=None, **gone
        )
        self._note(instance, reason)  # after the update: the push shows it crashed
        logger.warning("instance %s crashed: %s", instance.name, reason)

    def _adopt(self, instance: LocalInstance, now: datetime) -> None:
        """An earlier launcher's process: take it over only if it is provably the one
        it started; never start a second copy, never signal a stranger."""
        found = procs.stat(instance.pid)
        gone = {"pid": None, "process_started": None, "exited_at": now, "exit_code": None}
        if found is None or found.state == "Z":
            fleet.lose_server(instance.server_id)
            if instance.state == LocalState.STOPPING:
                LocalInstance.objects.filter(pk=instance.pk).update(
                    state=LocalState.STOPPED, **gone
                )
            else:  # it died while no launcher watched
                self._crashed(instance, None, now, gone)
            return
        if not proven_ours(instance, found):
            fleet.lose_server(instance.server_id)
            reason = (
                f"process {instance.pid} on port {instance.port} is not proven ours: left alone"
            )
            LocalInstance.objects.filter(pk=instance.pk).update(
                state=LocalState.ERROR, error=reason, pid=None, process_started=None
            )
            logger.warning("instance %s: %s", instance.name, reason)
            return
        log_path = Path(instance.log_path or instance.default_log_path())
        child = Child(
            instance.pk,
            instance.name,
            instance.pid,
            found.starttime,
            instance.port,
            _resumed_tail(instance.pk, log_path),
        )
        self.children[instance.pk] = child
        self._note(instance, f"adopted process {instance.pid} (the launcher restarted)")
        logger.info("instance %s: adopted pid %s", instance.name, instance.pid)
        if instance.state == LocalState.STOPPING:
            self._begin_stop(instance, child, "it was stopping when the launcher restarted")
        elif comfyui_answers(instance.port):
            if instance.state == LocalState.STARTING:
                self._promote(instance, child)
            else:
                fleet.enable_server(instance, instance.port, fresh=False)
        elif instance.state == LocalState.RUNNING:
            # Ours but not answering (yet): watched as starting, within the cap.
            LocalInstance.objects.filter(pk=instance.pk).update(state=LocalState.STARTING)
            fleet.lose_server(instance.server_id)

    def _tend_deleted(self, child: Child) -> None:
        """Its instance was deleted while it ran: stop it all the same."""
        exited, _ = child.exit_status()
        if exited:
            child.signal(signal.SIGKILL)
            child.reap()
            del self.children[child.instance_id]
            console.forget(child.instance_id)
        elif child.stop_deadline is None:
            if child.adopted and child.is_ours():
                child.members = procs.group_members(child.pid)
            child.signal(signal.SIGTERM)
            child.stop_deadline = time.monotonic() + self._grace()
        elif not child.killed and time.monotonic() >= child.stop_deadline:
            child.killed = True
            child.signal(signal.SIGKILL)

    # -- consoles ---------------------------------------------------------------------

    def _read_consoles(self) -> None:
        for child in list(self.children.values()):
            try:
                self._read_console(child)
                if logfile.rotate_if_big(
                    child.tail.path, self.config.log_max_bytes, self.config.log_backups
                ):
                    child.tail.rotated()
            except OSError as error:
                logger.warning("console of %s not read: %s", child.name, error)

    def _read_console(self, child: Child) -> None:
        lines = child.tail.read_new()
        if lines:
            console.append(child.instance_id, lines)
            console.save_offset(child.instance_id, child.tail.inode, child.tail.offset)
            panel.publish(child.instance_id, lines)

    def _note(self, instance: LocalInstance, text: str) -> None:
        """A line in the instance's console (through its log file)."""
        path = Path(instance.log_path or instance.default_log_path())
        try:
            logfile.write_note(path, text)
        except OSError as error:
            logger.warning("note for %s not written: %s", instance.name, error)
            return
        child = self.children.get(instance.pk)
        if child is None:  # nobody tails it: straight to the console
            tail = logfile.LogTail.at_end(path)
            console.append(instance.pk, [f"[launcher] {text}"])
            console.save_offset(instance.pk, tail.inode, tail.offset)
            panel.publish(instance.pk, [f"[launcher] {text}"])


def _resumed_tail(instance_id: int, path: Path) -> logfile.LogTail:
    """Read on from where the last launcher stopped reading, if it is the same file."""
    saved = console.load_offset(instance_id)
    try:
        found = path.stat()
    except FileNotFoundError:
        return logfile.LogTail(path)
    if saved is not None and saved[0] == found.st_ino and saved[1] <= found.st_size:
        return logfile.LogTail(path, offset=saved[1], inode=saved[0])
    return logfile.LogTail.at_end(path)


class _Waker:
    """Sleeps between ticks, cut short by `servers.local.control.wake()`."""

    def __init__(self) -> None:
        self._pubsub = None
        try:
            self._pubsub = console.redis_client().pubsub(ignore_subscribe_messages=True)
            self._pubsub.subscribe(WAKE_CHANNEL)
        except Exception as error:
            logger.warning("no wake-ups (polling only): %s", error)
            self._pubsub = None

    def wait(self, seconds: float) -> None:
        if self._pubsub is not None:
            try:
                if self._pubsub.get_message(timeout=seconds) is not None:
                    while self._pubsub.get_message(timeout=0) is not None:
                        pass
                return
            except Exception as error:
                logger.warning("wake-ups lost (polling only): %s", error)
                self._pubsub = None
        time.sleep(seconds)

    def close(self) -> None:
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                self._pubsub.close()
