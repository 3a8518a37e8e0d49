"""Benchmark of live updates and submit latency (issue 15, goal 5), through a real `serve`.

One `manage.py serve` (fresh data directory: SQLite and an embedded Redis unless
DATABASE_URL / REDIS_URL are set; its web is daphne, with its worker and monitor).

A. Event → browser with N open dashboard sockets. N users (in 10 teams), each
   signed in with a session cookie as a browser is, open /ws/live/ from a
   client process of their own (the `websockets` library, one asyncio loop) and
   subscribe to what the dashboard's live.js subscribes to: "health", "queue"
   and "servers". Twelve (disabled) servers make the fleet table its usual
   size. This process then publishes the way production does, alternating a
   task transition's dashboard hint (`tasks.queue_panel.refresh_browsers`, one
   message) and a server change (`servers.status_panel.publish_server`, the
   fleet rows and the compact panel's hint), one event every --interval ms.
   Per delivered message: the time from just before the publish call
   (rendering included) to its receipt by the client (both clocks are this
   machine's). Prints p50/p90/p99/max, whether every socket got every message
   exactly once, and the CPU that daphne and the client process spent per
   delivered message (wall-clock figures move with the machine's other work,
   which is printed too; CPU per message much less).

B. Submit → prompt accepted on an idle server. One simulated ComfyUI runs in
   this process (prompts take no time); `POST /prompt` is timed where it puts
   the prompt in its queue. Alternately, `POST /api/v1/tasks` to serve (a
   Bearer token; serve's worker dispatches it, serve's monitor sees it end) and
   a direct `POST /prompt` to the same simulator, each run on an idle server
   (the previous task completed). Prints p50/p90 of both, the difference of
   the p50s, and where the API path's time goes (request → task row,
   → API answer, → task claimed by the dispatcher, → prompt accepted).

`--profile FILE` records serve's web (A) and web and worker (B) with py-spy
(`pip install py-spy`). Exits non-zero only on errors, never on a figure.

Rerun: .venv/bin/python bench/bench_live.py [--quick] [--sockets N] [--events M]
       [--interval MS] [--submits K] [--parts A,B] [--profile FILE] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import pathlib
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from typing import Any

import httpx

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_makespan import (  # noqa: E402
    START_TIMEOUT,
    _child_pids,
    _wait_healthz,
    machine,
    serve_env,
    setup_django,
    wait_fleet_ready,
)
from bench.common import (  # noqa: E402
    BusySampler,
    Child,
    free_port,
    percentile,
    tree_cpu_seconds,
    trivial_graph,
)

QUICK = {"sockets": 100, "events": 20, "submits": 10}
FULL = {"sockets": 500, "events": 100, "submits": 50}
DASHBOARD_TOPICS = ("health", "queue", "servers")  # templates/comfyweb/dashboard.html
TEAMS = 10
FLEET_ROWS = 12
QUIET_SECONDS = 1.0
HEAD = 400  # characters of a message the clients keep
TYPE_OR_TARGET = {key: re.compile(rf'"{key}": "([^"]*)"') for key in ("type", "target")}


# -- A: the client process ----------------------------------------------------------------


async def _client(url: str, origin: str, cookie: str, records: list, ready: asyncio.Event):
    """One dashboard socket: subscribe as live.js does, then record every message."""
    import websockets

    headers = {"Cookie": cookie}
    async with websockets.connect(
        url, origin=origin, additional_headers=headers, max_size=None, compression=None
    ) as socket:
        for topic in DASHBOARD_TOPICS:
            await socket.send(json.dumps({"action": "subscribe", "topic": topic, "key": None}))
        subscribed = 0
        async for raw in socket:
            received = time.time()
            if subscribed < len(DASHBOARD_TOPICS) and '"subscribed"' in raw:
                subscribed += 1
                if subscribed == len(DASHBOARD_TOPICS):
                    ready.set()
                continue
            # Parsed after the run, and only the head: type, topic, key and target come
            # before the HTML (live.fragment's order), which need not be kept.
            records.append((received, raw[:HEAD]))


async def _run_clients(url: str, origin: str, cookies: list[str]) -> dict[str, Any]:
    records: list[list] = [[] for _ in cookies]
    readies = [asyncio.Event() for _ in cookies]
    tasks = []
    for start in range(0, len(cookies), 50):  # connect in waves: snapshots render per socket
        for index in range(start, min(start + 50, len(cookies))):
            tasks.append(
                asyncio.create_task(
                    _client(url, origin, cookies[index], records[index], readies[index])
                )
            )
        await asyncio.wait_for(
            asyncio.gather(*(r.wait() for r in readies[start : start + 50])), 120
        )
    await _quiet(records)  # the snapshots are in
    for mine in records:
        mine.clear()
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)  # the publisher is done
    await _quiet(records)
    print("quiet", flush=True)  # every delivery is in: the publisher reads CPU times
    records = [[(at, *_type_and_target(head)) for at, head in mine] for mine in records]
    failed = [repr(t.exception()) for t in tasks if t.done() and t.exception()]
    for task in tasks:
        task.cancel()
    return {"records": records, "failed": failed}


def _type_and_target(head: str) -> tuple[str | None, str | None]:
    found = {key: TYPE_OR_TARGET[key].search(head) for key in TYPE_OR_TARGET}
    return tuple(m.group(1) if m else None for m in found.values())  # type: ignore[return-value]


async def _quiet(records: list[list]) -> None:
    """Until no socket has received anything for QUIET_SECONDS."""
    while True:
        before = sum(len(r) for r in records)
        await asyncio.sleep(QUIET_SECONDS)
        if sum(len(r) for r in records) == before:
            return


def clients_main(argv: list[str]) -> int:
    url, origin, cookie_file, out = argv
    cookies = json.loads(pathlib.Path(cookie_file).read_text())
    result = asyncio.run(_run_clients(url, origin, cookies))
    pathlib.Path(out).write_text(json.dumps(result))
    print("done", flush=True)
    return 0


# -- A: this process: users, sockets, publishing -------------------------------------------


def dashboard_users(count: int) -> list[str]:
    """`count` users in TEAMS teams, each signed in: their session cookies."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    from servers.models import Server, ServerKind
    from teams.models import Membership, Role, Team

    # Disabled: the monitor leaves them alone (and so publishes nothing of its own).
    Server.objects.filter(name="bench-live").update(enabled=False)
    for index in range(FLEET_ROWS):
        Server.objects.update_or_create(
            name=f"live-fleet-{index + 1}",
            defaults={
                "base_url": f"http://127.0.0.1:{20000 + index}",
                "kind": ServerKind.SIMULATED,
                "enabled": False,
            },
        )
    teams = [Team.objects.get_or_create(name=f"Live bench {i}")[0] for i in range(TEAMS)]
    cookies = []
    client = Client()
    for index in range(count):
        user, _ = get_user_model().objects.get_or_create(username=f"live-bench-{index}")
        Membership.objects.get_or_create(
            team=teams[index % TEAMS], user=user, defaults={"role": Role.MEMBER}
        )
        client.force_login(user)
        session = client.cookies[settings.SESSION_COOKIE_NAME].value
        cookies.append(f"{settings.SESSION_COOKIE_NAME}={session}")
        client.cookies.clear()
    return cookies


def publish_events(count: int, interval: float) -> list[tuple[float, tuple[str, ...], float]]:
    """Alternately a transition's dashboard hint and a server change, as production does."""
    from servers import status_panel
    from servers.models import Server
    from tasks import queue_panel

    server_id = Server.objects.filter(name="live-fleet-1").values_list("pk", flat=True).get()
    published = []
    for index in range(count):
        started = time.time()
        if index % 2 == 0:
            queue_panel.refresh_browsers()
            targets: tuple[str, ...] = (queue_panel.TARGET,)
        else:
            status_panel.publish_server(server_id)
            targets = (status_panel.ROWS_TARGET, status_panel.COMPACT_TARGET)
        published.append((started, targets, time.time() - started))
        time.sleep(max(0.0, started + interval - time.time()))
    return published


def _profile(pid: int, out: pathlib.Path | None, seconds: float | None = None):
    """py-spy on one of serve's processes and its children (--profile): for `seconds`,
    or until sent SIGINT. Raw collapsed stacks, for flamegraph.pl or a sum by frame."""
    if out is None:
        return None
    py_spy = pathlib.Path(sys.executable).with_name("py-spy")
    argv = [str(py_spy), "record", "-p", str(pid), "--subprocesses", "-r", "250"]
    if seconds is not None:
        argv += ["-d", str(max(1, round(seconds)))]
    return subprocess.Popen([*argv, "-f", "raw", "-o", str(out)], stderr=subprocess.DEVNULL)


def _stop_profiles(profilers: list) -> None:
    for profiler in filter(None, profilers):
        profiler.send_signal(signal.SIGINT)
        profiler.wait(timeout=60)


def part_a(
    port: int,
    sockets: int,
    events: int,
    interval: float,
    folder: pathlib.Path,
    web_pid: int,
    profile: pathlib.Path | None = None,
) -> None:
    cookies = dashboard_users(sockets)
    publish_events(2, 0.0)  # templates loaded, Redis connected: before anyone listens
    cookie_file = folder / "cookies.json"
    cookie_file.write_text(json.dumps(cookies))
    out = folder / "received.json"
    argv = [
        sys.executable, __file__, "--clients",
        f"ws://127.0.0.1:{port}/ws/live/", f"http://127.0.0.1:{port}", str(cookie_file), str(out),
    ]  # fmt: skip
    clients = subprocess.Popen(
        argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert clients.stdout is not None
        assert clients.stdin is not None
        line = clients.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"the client process said {line!r} (exit {clients.poll()})")
        profiler = _profile(web_pid, profile, events * interval + 2 * QUIET_SECONDS)
        cpu = {"web": web_pid, "clients": clients.pid}
        with BusySampler() as busy:
            before = {name: tree_cpu_seconds(pid) for name, pid in cpu.items()}
            started = time.time()
            published = publish_events(events, interval)
            clients.stdin.write("stop\n")
            clients.stdin.flush()
            line = clients.stdout.readline().strip()  # "quiet": every delivery is in
            cpu = {name: tree_cpu_seconds(pid) - before[name] for name, pid in cpu.items()}
            load = busy.summary(started, time.time())
        if profiler is not None:
            profiler.wait(timeout=120)
        if line == "quiet":
            line = clients.stdout.readline().strip()
        if line != "done":
            raise RuntimeError(f"the client process said {line!r} (exit {clients.poll()})")
        clients.wait(timeout=30)
    finally:
        if clients.poll() is None:
            clients.kill()
    result = json.loads(out.read_text())
    delivered = report_a(published, result["records"], result["failed"], sockets, events, interval)
    per = {name: seconds * 1e6 / max(1, delivered) for name, seconds in cpu.items()}
    print(
        f"   CPU per delivered message: web (daphne) {per['web']:.0f} µs, "
        f"the client process {per['clients']:.0f} µs ({cpu['web']:.1f} s and "
        f"{cpu['clients']:.1f} s in all)"
    )
    print(f"   {load}")


def report_a(published, records, failed, sockets: int, events: int, interval: float) -> int:
    sent: dict[str, list[float]] = defaultdict(list)
    for started, targets, _ in published:
        for target in targets:
            sent[target].append(started)
    latencies: list[float] = []
    exact = missing = extra = other = 0
    for mine in records:
        got: dict[str, list[float]] = defaultdict(list)
        for received, _kind, target in mine:
            got[target].append(received)
        ok = True
        for target, times in sent.items():
            arrivals = got.pop(target, [])
            if len(arrivals) == len(times):  # in order, one each: the k-th is the k-th's
                latencies += [(r - s) * 1000 for s, r in zip(times, arrivals, strict=True)]
                continue
            # Else each arrival is the latest publish's before it (a message published
            # by someone else shows as a duplicate, one never delivered as missing).
            ok = False
            count = [0] * len(times)
            for received in arrivals:
                index = bisect.bisect_right(times, received) - 1
                if index < 0:
                    other += 1
                    continue
                count[index] += 1
                if count[index] == 1:
                    latencies.append((received - times[index]) * 1000)
            missing += count.count(0)
            extra += sum(max(0, n - 1) for n in count)
        other += sum(len(v) for v in got.values())  # e.g. the health panel's minute schedule
        exact += ok
    expected = sum(len(t) for t in sent.values())
    print(
        f"\nA. event → browser: {sockets} dashboard sockets (topics "
        f"{', '.join(DASHBOARD_TOPICS)}), {events} events one per {interval * 1000:.0f} ms, "
        f"{expected} messages per socket"
    )
    if latencies:
        print(
            f"   per delivered message ({len(latencies)}): "
            f"p50 {percentile(latencies, 0.5):.1f} ms, "
            f"p90 {percentile(latencies, 0.9):.1f} ms, p99 {percentile(latencies, 0.99):.1f} ms, "
            f"max {max(latencies):.1f} ms"
        )
    calls = [seconds * 1000 for *_, seconds in published]
    print(
        f"   the publish calls themselves (rendering, Redis): p50 {percentile(calls, 0.5):.1f} ms, "
        f"max {max(calls):.1f} ms"
    )
    print(
        f"   sockets that got every message exactly once: {exact} of {sockets}; "
        f"missing {missing}, duplicated {extra}; other messages {other} (scheduled publishes)"
        + (f"; {len(failed)} sockets failed, e.g. {failed[0]}" if failed else "")
    )
    return len(latencies)


# -- B: submit → prompt accepted -------------------------------------------------------


class Simulator:
    """One simulated ComfyUI in a thread of this process, noting when it accepts a prompt."""

    def __init__(self, folder: pathlib.Path) -> None:
        from servers.simulator import SimulatedComfyUI, SimulatorConfig

        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.sim = SimulatedComfyUI(
            "127.0.0.1", 0, data_dir=folder, config=SimulatorConfig(time_scale=0.0)
        )
        self._run(self.sim.start())
        self.accepted: dict[str, float] = {}
        self.arrived = threading.Condition()
        put = self.sim.queue.put

        def noting_put(item) -> None:  # POST /prompt puts a valid prompt here
            at = time.time()
            put(item)
            with self.arrived:
                self.accepted[item.prompt_id] = at
                self.arrived.notify_all()

        self.sim.queue.put = noting_put

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def accepted_at(self, prompt_id: str) -> float:
        with self.arrived:
            return self.accepted[prompt_id]

    def next_accepted(self, known: int, timeout: float = 30.0) -> tuple[str, float]:
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.accepted) > known, timeout):
                raise RuntimeError("the simulator accepted no prompt in time")
            prompt_id = list(self.accepted)[known]
            return prompt_id, self.accepted[prompt_id]

    def idle(self) -> bool:
        return self.sim.queue.remaining() == 0 and self.sim.executor.running_prompt_id is None

    def stop(self) -> None:
        self._run(self.sim.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)


def _wait(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.01)


def part_b(
    port: int,
    runs: int,
    folder: pathlib.Path,
    pids: dict[str, int],
    profile: pathlib.Path | None = None,
) -> None:
    from django.contrib.auth import get_user_model

    from api.tokens import issue_token
    from servers.models import Server, ServerKind
    from tasks.models import Status, Task
    from teams.models import Membership, Role, Team
    from workflows.models import Workflow
    from workflows.store import create_workflow

    sim = Simulator(folder / "sim")
    try:
        Server.objects.update_or_create(
            name="bench-live",
            defaults={
                "base_url": sim.sim.base_url,
                "kind": ServerKind.SIMULATED,
                "enabled": True,
                "max_inflight": 2,
            },
        )
        wait_fleet_ready(1)
        team, _ = Team.objects.get_or_create(name="Live bench submit")
        user, _ = get_user_model().objects.get_or_create(username="live-bench-submit")
        Membership.objects.get_or_create(team=team, user=user, defaults={"role": Role.MEMBER})
        workflow = Workflow.objects.filter(team=team, name="live-bench").first() or create_workflow(
            team=team, name="live-bench", description="", tags=[], graph=trivial_graph(0), user=user
        )
        _, token = issue_token(user, "bench-live")
        api = httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}
        )
        direct = httpx.Client(base_url=sim.sim.base_url)
        profilers = [
            _profile(pids[name], profile and profile.with_suffix(f".b-{name}.txt"))
            for name in ("web", "worker")
        ]
        busy = BusySampler().__enter__()
        began = time.time()
        roles = {name: pids[name] for name in ("web", "worker", "monitor") if name in pids}
        cpu_before = {name: tree_cpu_seconds(pid) for name, pid in roles.items()}
        via_api: list[float] = []
        straight: list[float] = []
        steps: dict[str, list[float]] = defaultdict(list)
        active = Task.objects.filter(status__in=[Status.PENDING, Status.DISPATCHED, Status.RUNNING])
        for index in range(runs + 1):  # the first of each warms up, not counted
            # Idle: nothing queued here (DATABASE_URL may hold older work) nor there.
            _wait(lambda: not active.exists() and sim.idle(), "no task left to run", 120)
            started = time.time()
            answer = api.post("/api/v1/tasks", json={"workflow": workflow.pk})
            answered = time.time()
            answer.raise_for_status()
            task_id = answer.json()["tasks"][0]["id"]
            done = Task.objects.filter(pk=task_id, status=Status.COMPLETED)
            _wait(done.exists, f"task {task_id} completed")
            task = done.get()
            accepted = sim.accepted_at(task.prompt_id)
            if index:
                via_api.append((accepted - started) * 1000)
                steps["request → task row"].append((task.created_at.timestamp() - started) * 1000)
                steps["task row → API answer"].append(
                    (answered - task.created_at.timestamp()) * 1000
                )
                steps["API answer → task claimed"].append(
                    (task.dispatched_at.timestamp() - answered) * 1000
                )
                steps["task claimed → prompt accepted"].append(
                    (accepted - task.dispatched_at.timestamp()) * 1000
                )
            _wait(sim.idle, "the simulator idle", 120)
            known = len(sim.accepted)
            started = time.time()
            body = {"prompt": trivial_graph(1000 + index), "client_id": "bench-live"}
            direct.post("/prompt", json=body).raise_for_status()
            _, accepted = sim.next_accepted(known)
            if index:
                straight.append((accepted - started) * 1000)
        _stop_profiles(profilers)
        busy.__exit__(None, None, None)
        load = busy.summary(began, time.time())
        cpu = {n: (tree_cpu_seconds(pid) - cpu_before[n]) * 1000 for n, pid in roles.items()}
        api.close()
        direct.close()
    finally:
        Server.objects.filter(name="bench-live").update(enabled=False)  # its URL dies here
        sim.stop()
    report_b(via_api, straight, steps)
    per_run = ", ".join(f"{name} {ms / (runs + 1):.0f} ms" for name, ms in cpu.items())
    print(f"   serve's CPU over B ÷ tasks submitted (idle polling included): {per_run}")
    print(f"   {load}")


def report_b(via_api: list[float], straight: list[float], steps: dict[str, list[float]]) -> None:
    print(f"\nB. submit → prompt accepted on an idle server ({len(via_api)} runs each)")
    for name, times in (("POST /api/v1/tasks", via_api), ("direct POST /prompt", straight)):
        print(
            f"   {name:<22} p50 {statistics.median(times):7.2f} ms   "
            f"p90 {percentile(times, 0.9):7.2f} ms"
        )
    difference = statistics.median(via_api) - statistics.median(straight)
    print(f"   difference of the p50s: {difference:.2f} ms")
    print("   where the API path's time goes (p50 of each step):")
    for name, times in steps.items():
        print(f"     {name:<32} {statistics.median(times):7.2f} ms")


# -- the run -------------------------------------------------------------------------------


def parse_options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"preset for `make bench`: {QUICK['sockets']} sockets, {QUICK['events']} events, "
        f"{QUICK['submits']} submits (options given explicitly still win)",
    )
    parser.add_argument("--sockets", type=int, help="dashboard sockets (default 500)")
    parser.add_argument("--events", type=int, help="events published (default 100)")
    parser.add_argument(
        "--interval", type=float, default=200.0, help="ms between events (default 200)"
    )
    parser.add_argument("--submits", type=int, help="submits of each kind (default 50)")
    parser.add_argument("--parts", default="A,B", help="A, B or A,B (default)")
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="py-spy: serve's web during A's events to FILE, its web and worker during B "
        "to FILE's name + .b-web.txt / .b-worker.txt (raw collapsed stacks)",
    )
    parser.add_argument("--keep", action="store_true", help="keep serve's log and data")
    options = parser.parse_args(argv)
    preset = QUICK if options.quick else FULL
    for name, value in preset.items():
        if getattr(options, name) is None:
            setattr(options, name, value)
    options.part_list = {p.strip().upper() for p in options.parts.split(",") if p.strip()}
    if not options.part_list or options.part_list - {"A", "B"}:
        parser.error("--parts: A, B or A,B")
    if min(options.sockets, options.events, options.submits) < 1 or options.interval < 0:
        parser.error("--sockets, --events and --submits must be positive")
    return options


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    described = machine()
    folder = pathlib.Path(tempfile.mkdtemp(prefix="bench-live-", dir="/tmp"))
    data_dir = folder / "data"
    data_dir.mkdir()
    env = serve_env(data_dir)
    port = free_port()
    argv = [sys.executable, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(port)]
    serve = Child("serve", argv, env, folder / "serve.log")
    try:
        serve.wait_for(r"ComfyWeb is running at", timeout=START_TIMEOUT)
        _wait_healthz(f"http://127.0.0.1:{port}/healthz")
        setup_django(env)
        profile = pathlib.Path(options.profile).resolve() if options.profile else None
        if "A" in options.part_list:
            web_pid = _child_pids(serve)["web"]
            interval = options.interval / 1000
            part_a(port, options.sockets, options.events, interval, folder, web_pid, profile)
        if "B" in options.part_list:
            part_b(port, options.submits, folder, _child_pids(serve), profile)
    except Exception:
        print(f"serve's log (tail):\n{serve.stderr_tail()}", file=sys.stderr)
        raise
    finally:
        serve.stop()
        if options.keep:
            print(f"kept the logs and data in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    print()
    print(described)
    print(
        f"rerun: .venv/bin/python bench/bench_live.py --sockets {options.sockets} "
        f"--events {options.events} --interval {options.interval:g} "
        f"--submits {options.submits} --parts {','.join(sorted(options.part_list))}"
    )
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--clients"]:
        sys.exit(clients_main(sys.argv[2:]))
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: every process this run started is stopped", file=sys.stderr)
        sys.exit(130)
