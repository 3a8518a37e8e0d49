"""`manage.py serve`: ComfyWeb on one machine with one command.

Starts the embedded Redis when REDIS_URL is unset, migrates, creates the first
admin, then supervises the web server (daphne), the worker cluster (django-q2),
the monitor and the launcher of local ComfyUI instances as child processes until
Ctrl-C or SIGTERM. `--demo N` adds N simulated ComfyUI servers on consecutive
ports from `--demo-port` and registers them in the fleet as kind "simulated".
Production runs those processes separately (see README).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from functools import partial

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from comfyweb import embedded_redis
from comfyweb.first_run import create_initial_admin, credentials_box
from comfyweb.supervisor import ChildSpec, Supervisor
from servers import demo as demo_fleet

MANAGE_PY = str(settings.BASE_DIR / "manage.py")
# Far from ComfyUI's own 8188 (and below Linux's ephemeral ports), so a ComfyUI the
# user runs on this machine keeps its port and is never mistaken for a demo server.
DEMO_BASE_PORT = 18188


class Command(BaseCommand):
    help = "Run ComfyWeb (web, worker and, without REDIS_URL, an embedded Redis) supervised."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
        parser.add_argument("--port", type=int, default=8000, help="port to listen on")
        parser.add_argument(
            "--demo",
            type=int,
            default=0,
            metavar="N",
            help="also run N simulated ComfyUI servers",
        )
        parser.add_argument(
            "--demo-port",
            type=int,
            default=None,
            metavar="P",
            help=f"the demo servers listen on P, P+1, ... (default: the first N free ports "
            f"from {DEMO_BASE_PORT} up)",
        )

    def handle(
        self, *args, host: str, port: int, demo: int, demo_port: int | None, **options
    ) -> None:
        if not 0 < port < 65536:
            raise CommandError(f"--port {port} is not a TCP port")
        if not 0 <= demo <= 32:
            raise CommandError(f"--demo {demo}: run between 0 and 32 simulated servers")
        demo_port = demo_ports(demo_port, demo) if demo else 0
        socket_path = settings.EMBEDDED_REDIS_SOCKET
        if settings.EMBEDDED_REDIS and embedded_redis.is_answering(socket_path):
            raise CommandError(
                f"another ComfyWeb already runs Redis on {socket_path}; "
                "stop it or set COMFYWEB_DATA_DIR to another directory"
            )
        with Supervisor(announce=self._announce) as supervisor:
            if settings.EMBEDDED_REDIS:
                socket_path.unlink(missing_ok=True)
                supervisor.start(
                    ChildSpec(
                        "redis",
                        embedded_redis.command(socket_path),
                        wait_ready=partial(_wait_for_redis, socket_path),
                        infrastructure=True,
                    )
                )
            credentials = self._prepare_database()
            try:
                self._start_fleet(supervisor, host, port, demo, demo_port)
            finally:
                # Last, below the start-up lines, so it is not scrolled away; even when
                # start-up was cut short, since the password exists nowhere else.
                if credentials:
                    self._announce("\n" + credentials_box(*credentials, _url(host, port)) + "\n")
            if not supervisor.stopping:
                supervisor.watch()

    def _start_fleet(
        self, supervisor: Supervisor, host: str, port: int, demo: int, demo_port: int
    ) -> None:
        if demo:
            registered = demo_fleet.register(demo, demo_port)
            self._announce("Demo servers: " + ", ".join(s.name for s in registered))
        specs = [
            self._web(host, port),
            self._worker(),
            ChildSpec("monitor", [sys.executable, MANAGE_PY, "monitor"], env=_child_env()),
            # Owns the local ComfyUI instances; they outlive a web or worker restart.
            ChildSpec("launcher", [sys.executable, MANAGE_PY, "launcher"], env=_child_env()),
        ]
        if demo:
            argv = demo_fleet.simulator_argv(demo, demo_port, settings.DATA_DIR / "demo")
            specs.append(ChildSpec("simulators", argv, env=_child_env()))
        for spec in specs:
            if not supervisor.stopping:
                supervisor.start(spec)
        if not supervisor.stopping:
            self._announce(f"ComfyWeb is running at {_url(host, port)} (Ctrl-C stops it)")

    def _prepare_database(self) -> tuple[str, str] | None:
        """Migrate and make the first administrator: its credentials, on the first run."""
        # In a process of its own: loading every migration leaves ~20 MB behind in the
        # process that ran them, and this one stays up as long as ComfyWeb runs. In its
        # own session, as when it ran here: a Ctrl-C lets it finish, then stops serve.
        migrate = [sys.executable, MANAGE_PY, "migrate", "--no-input", "--verbosity", "0"]
        code = subprocess.run(  # noqa: S603 - our own interpreter and manage.py
            migrate, env=_child_env(), check=False, start_new_session=True
        ).returncode
        if code != 0:
            raise CommandError(f"migrate failed (exit {code}); see its output above")
        return create_initial_admin()

    def _web(self, host: str, port: int) -> ChildSpec:
        argv = [sys.executable, "-m", "daphne", "--bind", host, "--port", str(port)]
        return ChildSpec("web", [*argv, "comfyweb.asgi:application"], env=_child_env())

    def _worker(self) -> ChildSpec:
        return ChildSpec("worker", [sys.executable, MANAGE_PY, "qcluster"], env=_child_env())

    def _announce(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()


def _wait_for_redis(socket_path, process) -> None:
    embedded_redis.wait_until_answering(socket_path, process)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "comfyweb.settings")
    # Children run from the project directory so `comfyweb.asgi` imports.
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(settings.BASE_DIR), env.get("PYTHONPATH")])
    )
    return env


def demo_ports(requested: int | None, count: int) -> int:
    """The first of `count` consecutive free loopback ports for the demo servers:
    exactly from `requested` when given (or an error naming the busy one)."""
    if requested is None:
        return first_free_port_run(DEMO_BASE_PORT, count)
    if not 0 < requested <= 65536 - count:
        raise CommandError(f"--demo-port {requested}: {count} ports from it are not TCP ports")
    for port in range(requested, requested + count):
        if not _port_free(port):
            raise CommandError(f"--demo-port {requested}: port {port} is in use")
    return requested


def first_free_port_run(start: int, count: int, *, limit: int = 200) -> int:
    """The first port >= start such that it and the next count-1 ports are free on loopback."""
    for base in range(start, start + limit):
        if all(_port_free(base + offset) for offset in range(count)):
            return base
    raise CommandError(f"no {count} consecutive free ports between {start} and {start + limit}")


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"
