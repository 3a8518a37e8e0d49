"""Benchmark of footprint (issue 15, goal 7): serve's idle memory, the monitor's CPU at scale.

Part A, memory: a real `manage.py serve` (no demo servers) on a throwaway
PostgreSQL database (created on the server of --postgres, else of DATABASE_URL
when it is PostgreSQL, else postgres://postgres@127.0.0.1:5432/; dropped at the
end) and a throwaway Redis (a private redis-server on a free loopback port, or
--redis-url), left idle for --settle seconds; then, per process serve started,
RSS, PSS and USS from /proc/<pid>/smaps_rollup, and their sums. RSS counts every
page a process maps, so processes forked from one parent (django-q2's qcluster:
leader, sentinel, workers, its monitor and pusher) count their shared
copy-on-write pages once each; PSS splits each shared page between the processes
that map it (the sum is what the machine really spends) and USS counts only a
process's private pages. Both sums are printed; the issue's figure is RSS.

Part B, the monitor at scale, in the same serve: --servers simulated servers
(one `python -m servers.simulator --count N` process serving N ports) are
registered; once the monitor has found every one healthy and read its node
catalogue (the time that took is printed) and --settle seconds have passed,
its CPU (utime + stime from /proc/<pid>/stat) is measured over --window
seconds, idle; then --prompts long prompts are submitted (EmptyImage →
SlowProgress → SaveImage, a step every --step seconds, each step a
`progress_state` and a `progress` event), serve's worker dispatches them, and
once all run (one per server) the CPU of the monitor, the worker, web and the
simulators is measured over another window, with the events per second the
monitor received. The monitor's memory with the whole fleet is printed too.

Exits non-zero only on errors (a process that does not start, a deadline),
never on a figure.

Rerun: .venv/bin/python bench/bench_footprint.py [--quick] [--servers N]
       [--prompts M] [--step S] [--window W] [--settle S] [--postgres URL]
       [--redis-url URL] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass

import psutil

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_makespan import (  # noqa: E402
    START_TIMEOUT,
    STARTED,
    machine,
    serve_env,
    setup_django,
    wait_fleet_ready,
)
from bench.bench_makespan import _wait_healthz as wait_healthz  # noqa: E402
from bench.common import Child, free_port  # noqa: E402

QUICK = {"servers": 100, "prompts": 10, "window": 10.0, "settle": 10.0}
FULL = {"servers": 500, "prompts": 50, "window": 30.0, "settle": 20.0}
DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432/postgres"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MB = 1024.0  # smaps_rollup counts kB


# -- what a process costs -----------------------------------------------------------


@dataclass(frozen=True)
class Memory:
    rss: float  # MB
    pss: float
    uss: float

    def __add__(self, other: Memory) -> Memory:
        return Memory(self.rss + other.rss, self.pss + other.pss, self.uss + other.uss)


NOTHING = Memory(0.0, 0.0, 0.0)


def memory_of(pid: int) -> Memory:
    """From /proc/<pid>/smaps_rollup: resident, proportional and unique set sizes."""
    fields: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        for line in rollup:
            parts = line.split()
            if len(parts) >= 3 and parts[0].endswith(":"):
                fields[parts[0][:-1]] = int(parts[1])
    private = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return Memory(fields["Rss"] / MB, fields["Pss"] / MB, private / MB)


def tree(pid: int) -> list[int]:
    """A process and its descendants, the root first."""
    try:
        root = psutil.Process(pid)
        return [pid, *(child.pid for child in root.children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (not its children), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class CpuWindow:
    """CPU of some processes (each with its descendants) over one wall-clock window."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._start = self._sample()
        self._started = time.monotonic()

    def _sample(self) -> dict[str, float]:
        totals = {}
        for name, pid in self.pids.items():
            total = 0.0
            for member in tree(pid):
                with contextlib.suppress(OSError):
                    total += cpu_seconds(member)
            totals[name] = total
        return totals

    def shares(self) -> tuple[dict[str, float], float]:
        """Each name's share of one core over the window, and the window's length."""
        end = self._sample()
        wall = time.monotonic() - self._started
        return {name: (end[name] - self._start[name]) / wall for name in self.pids}, wall


# -- throwaway services ------------------------------------------------------------------


@contextlib.contextmanager
def throwaway_postgres(base_url: str) -> Iterator[str]:
    """A new database on the server of `base_url`; yields its URL, drops it afterwards."""
    import psycopg

    parts = urllib.parse.urlsplit(base_url)
    name = f"comfyweb_bench_footprint_{os.getpid()}"
    admin = parts._replace(path="/postgres").geturl()
    try:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as error:
        raise RuntimeError(f"this benchmark needs PostgreSQL (--postgres URL): {error}") from None
    try:
        yield parts._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def throwaway_redis(folder: pathlib.Path) -> Iterator[str]:
    """A private redis-server on a free loopback port, nothing persisted; yields its URL."""
    from comfyweb.embedded_redis import server_binary

    port = free_port()
    argv = [str(server_binary()), "--port", str(port), "--bind", "127.0.0.1"]
    argv += ["--save", "", "--appendonly", "no", "--dir", str(folder)]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if "Ready to accept connections" in line:
                break
        else:
            raise RuntimeError(f"redis-server on port {port} exited before it was ready")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


# -- serve ---------------------------------------------------------------------------------


def child_pids(serve: Child) -> dict[str, int]:
    """The pids serve announced ("started web (pid N)"), the latest start of each child."""
    pids = {}
    for line in serve.lines:
        if match := STARTED.search(line):
            pids[match.group(1)] = int(match.group(2))
    return pids


def memory_report(serve: Child) -> list[str]:
    pids = child_pids(serve)
    groups = {name: tree(pid) for name, pid in pids.items()}
    groups["serve (the supervisor)"] = [serve.process.pid]
    totals: dict[str, tuple[int, Memory]] = {}
    lines = [f"{'process':<34} {'procs':>5} {'RSS MB':>8} {'PSS MB':>8} {'USS MB':>8}"]
    for name, members in groups.items():
        sizes = [memory_of(pid) for pid in members]
        total = sum(sizes, NOTHING)
        totals[name] = (len(members), total)
        lines.append(_row(name, len(members), total))
        if len(members) > 1:  # the qcluster and what it forked: workers, pusher, monitor
            for pid, size in zip(members, sizes, strict=True):
                lines.append(_row(f"  {_role(pid, members[0])} (pid {pid})", 1, size))
    for title, names in (
        ("web + worker + monitor", ("web", "worker", "monitor")),
        ("everything serve runs", tuple(totals)),
    ):
        count = sum(totals[n][0] for n in names if n in totals)
        total = sum((totals[n][1] for n in names if n in totals), NOTHING)
        lines.append(_row(f"= {title}", count, total))
    return lines


def _role(pid: int, root: int) -> str:
    """The qcluster started by serve, its children, their children."""
    if pid == root:
        return "qcluster"
    return "  its child" if psutil.Process(pid).ppid() == root else "    grandchild"


def _row(name: str, count: int, size: Memory) -> str:
    return f"{name:<34} {count:>5} {size.rss:>8.1f} {size.pss:>8.1f} {size.uss:>8.1f}"


# -- part B: the fleet -----------------------------------------------------------------------


def register_fleet(urls: list[str], health_interval: float | None):
    """The simulators as servers bench-1..N, enabled together in one UPDATE (the monitor
    meets them all at once, as when it starts); the team and user that submit."""
    from django.contrib.auth import get_user_model

    from servers.models import FleetSettings, Server, ServerKind, ServerState
    from teams.models import Membership, Role, Team

    if health_interval is not None:
        FleetSettings.objects.update_or_create(pk=1, defaults={"health_interval": health_interval})
    servers = Server.objects.bulk_create(
        Server(name=f"bench-{index}", base_url=url, kind=ServerKind.SIMULATED, enabled=False)
        for index, url in enumerate(urls, start=1)
    )
    ServerState.objects.bulk_create(ServerState(server=server) for server in servers)
    team, _ = Team.objects.get_or_create(name="Bench footprint")
    user, _ = get_user_model().objects.get_or_create(username="bench-footprint")
    Membership.objects.get_or_create(team=team, user=user, defaults={"role": Role.MEMBER})
    Server.objects.filter(name__startswith="bench-").update(enabled=True)
    return team, user


def long_prompt(index: int, step: float) -> dict:
    """Runs for 10,000 steps, a step (progress_state + progress) every `step` seconds."""
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": index},
        },
        "2": {
            "class_type": "SlowProgress",
            "inputs": {
                "image": ["1", 0],
                "steps": 10_000,  # the most SlowProgress takes
                "seconds_per_step": step,
                "nonce": index + 1,
            },
        },
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "fp"}},
    }


def events_received() -> int:
    """Events the monitor counted on the bench servers' streams (its last stats write)."""
    from servers.models import ServerState

    stats = ServerState.objects.filter(server__name__startswith="bench-").values_list(
        "event_stats", flat=True
    )
    return sum(int((value or {}).get("events_total", 0)) for value in stats)


def submit_and_wait_running(team, user, count: int, step: float, timeout: float) -> int:
    """Submit `count` long prompts; returns how many servers run them once all run."""
    from tasks.models import Status, Task
    from tasks.submission import submit_runs
    from workflows.templating import Run

    runs = [Run(long_prompt(index, step), {}) for index in range(count)]
    batch = submit_runs(team=team, submitter=user, runs=runs, description="bench_footprint").batch
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = Task.objects.filter(batch_id=batch.pk, status=Status.RUNNING)
        if running.count() == count:
            return running.values("server_id").distinct().count()
        failed = Task.objects.filter(batch_id=batch.pk, status=Status.FAILED).first()
        if failed is not None:
            raise RuntimeError(f"a prompt failed: {failed.error_type}: {failed.error_message}")
        time.sleep(0.2)
    raise RuntimeError(f"{count} prompts were not all running after {timeout:.0f} s")


class Report:
    """Figures, printed as they come (a run that fails later still shows them)."""

    def add(self, *lines: str) -> None:
        for line in lines:
            print(line, flush=True)


@contextlib.contextmanager
def simulators(count: int, folder: pathlib.Path) -> Iterator[tuple[list[str], int]]:
    """One simulator process serving `count` servers on free ports; yields (URLs, its pid).

    Each reports an idle GPU (--vram) whose free VRAM does not move: the default, this
    machine's RAM, moves with everything else running here, on every server at once.
    """
    argv = [sys.executable, "-m", "servers.simulator", "--count", str(count), "--base-port", "0"]
    argv += ["--vram", "24", "--data-dir", str(folder)]
    folder.mkdir(parents=True)
    child = Child("simulators", argv, dict(os.environ), folder.with_suffix(".log"))
    try:
        child.wait_for(r"^ready$", timeout=START_TIMEOUT)
        urls = [line.split()[-1] for line in child.lines if line.startswith("comfyui-sim ")]
        if len(urls) != count:
            raise RuntimeError(f"the simulator announced {len(urls)} servers of {count}")
        yield urls, child.process.pid
    finally:
        child.stop()


def fleet_report(
    serve: Child, options: argparse.Namespace, folder: pathlib.Path, lines: Report
) -> None:
    with simulators(options.servers, folder / "sims") as (urls, sims_pid):
        pids = child_pids(serve)
        startup = _profile(options, pids["monitor"], folder / "monitor-startup.raw", 60)
        team, user = register_fleet(urls, options.health_interval)
        enabled = time.monotonic()
        wait_fleet_ready(options.servers, timeout=START_TIMEOUT + options.servers)
        ready = time.monotonic() - enabled
        _profiled(startup, lines)
        interval = f"{options.health_interval:g} s" if options.health_interval else "default"
        lines.add(
            f"{options.servers} servers enabled at once → all healthy with their catalogues "
            f"read in {ready:.1f} s (health interval: {interval})"
        )
        time.sleep(options.settle)
        watched = {"monitor": pids["monitor"], "simulators": sims_pid}
        window = CpuWindow(watched)
        profiling = _profile(options, pids["monitor"], folder / "monitor-idle.raw")
        time.sleep(options.window)
        idle, wall = window.shares()
        _profiled(profiling, lines)
        lines.add(
            f"idle, {wall:.0f} s: monitor {idle['monitor']:.1%} of a core "
            f"({idle['monitor'] * 1000 / options.servers:.2f} ms per server per second); "
            f"the simulator process {idle['simulators']:.1%}"
        )
        lines.add(f"  {_monitor_memory(pids['monitor'])}")

        if not options.prompts:
            return
        spread = submit_and_wait_running(team, user, options.prompts, options.step, START_TIMEOUT)
        time.sleep(min(5.0, options.settle))  # the first stats writes of the busy streams
        busy_watch = {"monitor": pids["monitor"], "worker": pids["worker"], "web": pids["web"]}
        window = CpuWindow(busy_watch | {"simulators": sims_pid})
        events_before = events_received()
        profiling = _profile(options, pids["monitor"], folder / "monitor-busy.raw")
        time.sleep(options.window)
        busy, wall = window.shares()
        _profiled(profiling, lines)
        counted = (events_received() - events_before) / wall
        rate = 2 * options.prompts / options.step  # progress_state + progress per step
        lines.add(
            f"{options.prompts} prompts running on {spread} servers, a step every "
            f"{options.step:g} s ({rate:.0f} events/s sent; the monitor's statistics "
            f"counted {counted:.0f}/s), {wall:.0f} s: "
            f"monitor {busy['monitor']:.1%} of a core, worker {busy['worker']:.1%}, "
            f"web {busy['web']:.1%}, the simulator process {busy['simulators']:.1%}"
        )
        if rate:
            extra = max(0.0, busy["monitor"] - idle["monitor"])
            lines.add(f"  monitor CPU above idle per event sent: {extra * 1000 / rate:.3f} ms")
        lines.add(f"  {_monitor_memory(pids['monitor'])}")


def _profile(
    options: argparse.Namespace, pid: int, out: pathlib.Path, seconds: float | None = None
) -> tuple[subprocess.Popen, pathlib.Path] | None:
    """py-spy on the monitor over a window (--py-spy): raw stacks, GIL holders only."""
    if options.py_spy is None:
        return None
    duration = str(max(1, round(seconds or options.window)))
    argv = [options.py_spy, "record", "-p", str(pid), "-d", duration]
    argv += ["-r", "50", "--gil", "--format", "raw", "-o", str(out)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), out


def _profiled(profiling: tuple[subprocess.Popen, pathlib.Path] | None, lines: Report) -> None:
    if profiling is not None:
        process, out = profiling
        process.wait(timeout=120)
        lines.add(f"  profile: {out}")


def _monitor_memory(pid: int) -> str:
    size = memory_of(pid)
    return f"monitor memory: RSS {size.rss:.1f} MB, PSS {size.pss:.1f} MB, USS {size.uss:.1f} MB"


# -- the run ------------------------------------------------------------------------------------


def parse_options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"preset for `make bench`: {QUICK['servers']} servers, {QUICK['prompts']} prompts, "
        f"{QUICK['window']:g} s windows (options given explicitly still win)",
    )
    parser.add_argument(
        "--servers", type=int, help=f"simulated servers (default {FULL['servers']})"
    )
    parser.add_argument("--prompts", type=int, help=f"running prompts (default {FULL['prompts']})")
    parser.add_argument(
        "--step", type=float, default=0.25, help="seconds per progress step (default 0.25)"
    )
    parser.add_argument("--window", type=float, help="seconds per CPU window (default 30)")
    parser.add_argument("--settle", type=float, help="seconds left idle before measuring")
    parser.add_argument("--postgres", help="a PostgreSQL URL whose server gets the throwaway db")
    parser.add_argument("--redis-url", help="a Redis (db) of the benchmark's own; default: private")
    parser.add_argument(
        "--health-interval",
        type=float,
        help="the fleet's health check interval for part B (default: the model's, 5 s)",
    )
    parser.add_argument("--memory-only", action="store_true", help="part A only")
    parser.add_argument(
        "--py-spy",
        metavar="PATH",
        help="a py-spy binary: record the monitor over each window (raw stacks; implies --keep)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the logs (temporary directory)")
    options = parser.parse_args(argv)
    for name, value in (QUICK if options.quick else FULL).items():
        if getattr(options, name) is None:
            setattr(options, name, value)
    if options.servers < 1 or not 0 <= options.prompts <= options.servers:
        parser.error("--servers must be positive and --prompts between 0 and --servers")
    options.keep = options.keep or options.py_spy is not None
    if options.postgres is None:
        database = os.environ.get("DATABASE_URL", "")
        options.postgres = database if database.startswith("postgres") else DEFAULT_POSTGRES
    return options


def rerun_command(options: argparse.Namespace) -> str:
    return (
        f".venv/bin/python bench/bench_footprint.py --servers {options.servers} "
        f"--prompts {options.prompts} --step {options.step:g} --window {options.window:g} "
        f"--settle {options.settle:g}"
        + (f" --health-interval {options.health_interval:g}" if options.health_interval else "")
        + (" --memory-only" if options.memory_only else "")
    )


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)  # stop the children on a TERM too
    folder = pathlib.Path(tempfile.mkdtemp(prefix="bench-footprint-", dir="/tmp"))
    report = Report()
    try:
        with contextlib.ExitStack() as stack:
            database = stack.enter_context(throwaway_postgres(options.postgres))
            redis_url = options.redis_url or stack.enter_context(throwaway_redis(folder))
            os.environ |= {"DATABASE_URL": database, "REDIS_URL": redis_url}
            described = machine()
            data_dir = folder / "data"
            data_dir.mkdir()
            env = serve_env(data_dir)
            port = free_port()
            argv_serve = [sys.executable, "manage.py", "serve", "--port", str(port)]
            serve = Child("serve", argv_serve, env, folder / "serve.log")
            stack.callback(serve.stop)
            try:
                serve.wait_for(r"ComfyWeb is running at", timeout=START_TIMEOUT)
                wait_healthz(f"http://127.0.0.1:{port}/healthz")
                time.sleep(options.settle)
                report.add(f"idle serve, {options.settle:g} s after /healthz turned 200:")
                report.add(*memory_report(serve))
                if not options.memory_only:
                    setup_django(env)
                    report.add("")
                    fleet_report(serve, options, folder, report)
            except Exception:
                print(f"serve's log (tail):\n{serve.stderr_tail()}", file=sys.stderr)
                raise
    finally:
        if options.keep:
            print(f"kept the logs in {folder}", flush=True)
        else:
            shutil.rmtree(folder, ignore_errors=True)
    print()
    print(described)
    print(
        f"services: a throwaway database on {urllib.parse.urlsplit(options.postgres).netloc}, "
        + (f"Redis {options.redis_url}" if options.redis_url else "a private redis-server")
    )
    print(f"rerun: {rerun_command(options)}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: every process this run started is stopped", file=sys.stderr)
        sys.exit(130)
