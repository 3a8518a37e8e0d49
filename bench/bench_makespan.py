"""Benchmark of makespan (issue 15, goal 1): ComfyWeb against two client-side policies.

One run puts the same seeded job list on the same simulated fleet three times,
each time on freshly started simulators (one `python -m servers.simulator`
process, N servers of the given speeds on free loopback ports), and reports the
makespan of each policy against the lower bound (total work ÷ total speed):

* comfyweb: a real `manage.py serve` (fresh data directory: SQLite and an
  embedded Redis unless DATABASE_URL / REDIS_URL are set; no demo servers) with
  the simulators registered as servers (weight = speed, max_inflight 2). All
  jobs go in through `submit_runs` in one call (what the pages and the API
  call); serve's own worker dispatches them and its monitor follows them, and
  the run ends when every task is completed in the database (outputs
  collected). Makespan = last `finished_at` - the start of the submission.
  Also the CPU seconds of serve's worker (the whole qcluster process tree),
  monitor and web over the run, per task.
* least-queue: a client-side scheduler here (asyncio, ComfyUI's HTTP API and
  WebSocket) posts every job at once, each to the server with the fewest
  queued + running prompts (counted here: +1 on post, -1 on its
  execution_success). What most peers do.
* min-queue + 30 s lock: as least-queue, but a server chosen for a workflow
  keeps that workflow for 30 s (times the time scale), the seed's balancer (B1, B3).
  All jobs are one workflow unless --workflows says otherwise.

A time scale below 1 shortens the prompts but not ComfyWeb's own latency
and CPU per task, so it weighs them more: `--quick` checks that everything
runs; figures to set beside the issue's come from the default (time scale 1).

Makespan for the client-side policies = the last prompt's execution_success
(the server's timestamp) - the start of the submission; they download nothing.

Each job is EmptyImage → SlowProgress(steps, seconds_per_step) → SaveImage with
1-6 s of nominal work (steps * seconds_per_step); a server of speed s runs it in
work * time scale / s. Jobs of one workflow share their seconds_per_step (what a
model and an image size set) and differ in steps, as runs of one template do.
From the simulators' /history (execution_start and execution_success timestamps)
the time above the lower bound is split into the speed-weighted idle capacity
before each server's first prompt, between its prompts and after its last one,
plus the simulators' own overhead.

Exits non-zero only on errors (a process that does not start, a failed task, a
run past its deadline), never on a figure.

Rerun: .venv/bin/python bench/bench_makespan.py [--quick] [--speeds 4,4,2,...]
       [--servers N] [--jobs M] [--time-scale F] [--seed S] [--workflows W]
       [--policies comfyweb,least-queue,lock] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import itertools
import os
import pathlib
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import BusySampler, Child, free_port, percentile, tree_cpu_seconds  # noqa: E402
from servers.comfyui import (  # noqa: E402
    ComfyUIClient,
    EventStream,
    ExecutionError,
    ExecutionInterrupted,
    ExecutionSuccess,
)

ISSUE_SPEEDS = "4,4,2,2,1,1,1,1,0.5,0.5,0.5,0.5"
QUICK = {"speeds": "4,2,1,1,0.5,0.5", "jobs": 60, "time_scale": 0.2}
FULL = {"speeds": ISSUE_SPEEDS, "jobs": 400, "time_scale": 1.0}
POLICIES = {
    "comfyweb": "comfyweb",
    "least-queue": "least-queue (client-side)",
    "lock": "min-queue + 30 s lock",
}
LOCK_SECONDS = 30.0
MAX_INFLIGHT = 2
START_TIMEOUT = 90.0
STARTED = re.compile(r"started (\w+) \(pid (\d+)\)")


# -- the job list ------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    index: int
    steps: int
    seconds_per_step: float
    workflow: int  # which workflow the job belongs to, for the lock policy

    @property
    def work(self) -> float:
        """Nominal seconds on a server of speed 1 at time scale 1."""
        return self.steps * self.seconds_per_step

    def graph(self) -> dict[str, Any]:
        # The nonce makes every SlowProgress distinct, so no simulator serves it from cache.
        return {
            "1": {
                "class_type": "EmptyImage",
                "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0},
            },
            "2": {
                "class_type": "SlowProgress",
                "inputs": {
                    "image": ["1", 0],
                    "steps": self.steps,
                    "seconds_per_step": self.seconds_per_step,
                    "nonce": self.index + 1,
                },
            },
            "3": {
                "class_type": "SaveImage",
                "inputs": {"images": ["2", 0], "filename_prefix": "bench"},
            },
        }


def make_jobs(count: int, seed: int, workflows: int) -> list[Job]:
    """Jobs of 1-6 s of nominal work, as runs of `workflows` templates that differ
    in their step counts: each workflow has its own cost per step (as a model and
    image size would set it), and a job's work is its steps times that cost."""
    rng = random.Random(seed)
    per_step = [round(0.1 + 0.2 * w / max(1, workflows - 1), 3) for w in range(workflows)]
    jobs = []
    for index in range(count):
        workflow = index % workflows
        steps = max(1, round(rng.uniform(1.0, 6.0) / per_step[workflow]))
        jobs.append(Job(index, steps, per_step[workflow], workflow))
    return jobs


# -- processes -----------------------------------------------------------------------


@contextlib.contextmanager
def simulators(speeds: list[float], time_scale: float, folder: pathlib.Path) -> Iterator[list[str]]:
    """A fresh simulator process with one server per speed; yields their base URLs."""
    argv = [
        sys.executable, "-m", "servers.simulator",
        "--count", str(len(speeds)),
        "--base-port", "0",
        "--speed", ",".join(f"{speed:g}" for speed in speeds),
        "--time-scale", f"{time_scale:g}",
        "--data-dir", str(folder),
    ]  # fmt: skip
    folder.mkdir(parents=True)
    child = Child("simulators", argv, dict(os.environ), folder.with_suffix(".log"))
    try:
        child.wait_for(r"^ready$")
        urls = [line.split()[-1] for line in child.lines if line.startswith("comfyui-sim ")]
        if len(urls) != len(speeds) or not all(u.startswith("http://127.0.0.1:") for u in urls):
            raise RuntimeError(f"simulators announced {urls}")
        yield urls
    finally:
        child.stop()


# -- what the simulators ran -----------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """One prompt as its server ran it (epoch seconds, from its history)."""

    server: int
    prompt_id: str
    start: float
    end: float


async def read_spans(urls: list[str], prompt_ids: set[str]) -> dict[str, Span]:
    spans = {}
    for index, url in enumerate(urls):
        async with ComfyUIClient(url) as client:
            histories = await client.get_histories()
        for prompt_id, entry in histories.items():
            if prompt_id not in prompt_ids:
                continue
            stamps = {kind: data.get("timestamp") for kind, data in entry.messages}
            if not entry.succeeded or None in (
                stamps.get("execution_start"),
                stamps.get("execution_success"),
            ):
                raise RuntimeError(f"prompt {prompt_id} on {url} did not succeed: {entry.messages}")
            spans[prompt_id] = Span(
                index,
                prompt_id,
                stamps["execution_start"] / 1000,
                stamps["execution_success"] / 1000,
            )
    missing = prompt_ids - spans.keys()
    if missing:
        raise RuntimeError(f"{len(missing)} prompts missing from every server's history")
    return spans


@dataclass
class Outcome:
    policy: str
    started: float  # epoch seconds: the submission began
    ended: float  # epoch seconds: the last job completed
    spans: dict[str, Span]
    notes: list[str] = field(default_factory=list)
    # comfyweb only, by prompt id: when its task was claimed for its server and
    # completed in ComfyWeb (epoch seconds)
    dispatched: dict[str, float] = field(default_factory=dict)
    completed: dict[str, float] = field(default_factory=dict)

    @property
    def makespan(self) -> float:
        return self.ended - self.started

    def on_server(self, index: int) -> list[Span]:
        """The prompts server `index` ran, in the order it ran them."""
        return sorted((s for s in self.spans.values() if s.server == index), key=lambda s: s.start)


def lost_capacity(outcome: Outcome, speeds: list[float], work: float) -> dict[str, float]:
    """Makespan above the lower bound, split by cause (seconds of makespan).

    makespan * Σspeed = work + Σ speed * (idle + overhead) per server, so each
    cause's speed-weighted seconds ÷ Σspeed is its share of the excess.
    """
    total_speed = sum(speeds)
    lost = {"before first prompt (or unused)": 0.0, "gaps between prompts": 0.0, "tail": 0.0}
    busy = 0.0
    for index, speed in enumerate(speeds):
        spans = outcome.on_server(index)
        if not spans:
            lost["before first prompt (or unused)"] += speed * outcome.makespan
            continue
        lost["before first prompt (or unused)"] += speed * max(
            0.0, spans[0].start - outcome.started
        )
        lost["gaps between prompts"] += speed * sum(
            max(0.0, after.start - before.end) for before, after in itertools.pairwise(spans)
        )
        lost["tail"] += speed * max(0.0, outcome.ended - spans[-1].end)
        busy += speed * sum(s.end - s.start for s in spans)
    lost["simulator overhead"] = busy - work
    return {cause: seconds / total_speed for cause, seconds in lost.items()}


def gap_summary(outcome: Outcome, speeds: list[float]) -> str:
    fastest = max(speeds)
    gaps: list[float] = []
    fast_gaps: list[float] = []
    for index, speed in enumerate(speeds):
        spans = outcome.on_server(index)
        mine = [max(0.0, b.start - a.end) for a, b in itertools.pairwise(spans)]
        gaps += mine
        if speed == fastest:
            fast_gaps += mine
    if not gaps:
        return "idle gaps between prompts: none (no server ran two prompts)"
    fast = (
        f"speed-{fastest:g} servers mean {statistics.fmean(fast_gaps):.3f} s, "
        f"max {max(fast_gaps):.3f} s; "
        if fast_gaps
        else ""
    )
    return (
        f"idle gaps between prompts: {fast}all servers p50 {percentile(gaps, 0.5):.3f} s, "
        f"p90 {percentile(gaps, 0.9):.3f} s, max {max(gaps):.3f} s"
    )


def server_summary(outcome: Outcome, speeds: list[float]) -> str:
    parts = []
    for index, speed in enumerate(speeds):
        ends = [s.end for s in outcome.on_server(index)]
        last = f"{max(ends) - outcome.started:.1f}" if ends else "-"
        parts.append(f"{speed:g}: {len(ends)} @ {last}")
    return "per server (speed: prompts @ its last prompt's end, s): " + ", ".join(parts)


# -- client-side policies ------------------------------------------------------------


async def run_client_side(
    policy: str, urls: list[str], jobs: list[Job], lock_seconds: float, deadline: float
) -> Outcome:
    """Post every job at once, each to the server the policy picks; wait for all."""
    clients = [ComfyUIClient(url) for url in urls]
    streams = [EventStream(url) for url in urls]
    outstanding = [0] * len(urls)
    placed: dict[str, int] = {}
    finished: set[str] = set()
    failures: list[str] = []
    all_done = asyncio.Event()

    async def follow(index: int) -> None:
        async with streams[index].listen() as events:
            async for event in events:
                halted = isinstance(event, ExecutionError | ExecutionInterrupted)
                if not isinstance(event, ExecutionSuccess) and not halted:
                    continue
                if event.prompt_id not in placed or event.prompt_id in finished:
                    continue
                if halted:
                    failures.append(f"{event.prompt_id} on {urls[index]}: {event}")
                finished.add(event.prompt_id)
                outstanding[index] -= 1
                if len(finished) == len(jobs):
                    all_done.set()

    locks: dict[int, tuple[int, float]] = {}

    def choose(job: Job) -> int:
        if policy == "lock":
            held = locks.get(job.workflow)
            if held is not None and held[1] > time.monotonic():
                return held[0]
        best = min(range(len(urls)), key=lambda i: (outstanding[i], i))
        if policy == "lock":
            locks[job.workflow] = (best, time.monotonic() + lock_seconds)
        return best

    followers = []
    try:
        for stream in streams:
            await stream.start()
        followers = [asyncio.create_task(follow(i)) for i in range(len(urls))]
        await asyncio.wait_for(asyncio.gather(*(stream.wait_connected() for stream in streams)), 20)
        started = time.time()
        for job in jobs:
            index = choose(job)
            prompt_id = str(uuid.uuid4())
            placed[prompt_id] = index  # before the POST: its events may outrun the reply
            outstanding[index] += 1
            await clients[index].submit(
                job.graph(), client_id=streams[index].client_id, prompt_id=prompt_id
            )
        try:
            await asyncio.wait_for(all_done.wait(), max(1.0, deadline - time.monotonic()))
        except TimeoutError:
            raise RuntimeError(
                f"{policy}: {len(finished)} of {len(jobs)} prompts finished by the deadline"
            ) from None
        if failures:
            raise RuntimeError(f"{policy}: {len(failures)} prompts failed, e.g. {failures[0]}")
    finally:
        for task in followers:
            task.cancel()
        for stream in streams:
            await stream.close()
        for client in clients:
            await client.aclose()
    spans = await read_spans(urls, set(placed))
    return Outcome(POLICIES[policy], started, max(s.end for s in spans.values()), spans)


# -- ComfyWeb ----------------------------------------------------------------------------


def serve_env(data_dir: pathlib.Path) -> dict[str, str]:
    """serve's environment: a fresh data directory; DATABASE_URL/REDIS_URL as the user set them."""
    env = {k: v for k, v in os.environ.items() if k != "DEBUG"}
    return env | {
        "COMFYWEB_DATA_DIR": str(data_dir),
        "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-only"),
        "LOG_FORMAT": "text",
        "DJANGO_SETTINGS_MODULE": "comfyweb.settings",
    }


def setup_django(env: dict[str, str]) -> None:
    """This process's own Django on serve's database: to register, submit and poll."""
    for key in ("COMFYWEB_DATA_DIR", "SECRET_KEY", "DJANGO_SETTINGS_MODULE"):
        os.environ[key] = env[key]
    os.environ.pop("DEBUG", None)
    os.environ["LOG_LEVEL"] = "WARNING"  # this process's own logging only, not serve's
    import django

    django.setup()


def register_fleet(urls: list[str], speeds: list[float]):
    """The simulators as servers bench-1..N (other bench servers disabled); the team and user."""
    from django.contrib.auth import get_user_model

    from servers.models import Server, ServerKind
    from teams.models import Membership, Role, Team

    names = []
    for index, (url, speed) in enumerate(zip(urls, speeds, strict=True), start=1):
        server, _ = Server.objects.update_or_create(
            name=f"bench-{index}",
            defaults={
                "base_url": url,
                "kind": ServerKind.SIMULATED,
                "enabled": True,
                "weight": speed,
                "max_inflight": MAX_INFLIGHT,
                "draining": False,
            },
        )
        names.append(server.name)
    Server.objects.filter(name__startswith="bench-").exclude(name__in=names).update(enabled=False)
    others = Server.objects.filter(enabled=True).exclude(name__in=names).count()
    team, _ = Team.objects.get_or_create(name="Bench makespan")
    user, _ = get_user_model().objects.get_or_create(username="bench-makespan")
    Membership.objects.get_or_create(team=team, user=user, defaults={"role": Role.MEMBER})
    return team, user, others


def wait_fleet_ready(count: int, timeout: float = START_TIMEOUT) -> None:
    """Until the monitor has found every bench server healthy and read its catalogue."""
    from servers.models import ServerState

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = ServerState.objects.filter(
            server__name__startswith="bench-",
            server__enabled=True,
            health="healthy",
            capabilities_at__isnull=False,
        ).count()
        if ready == count:
            return
        time.sleep(0.2)
    raise RuntimeError(f"the monitor readied {ready} of {count} servers in {timeout:.0f} s")


def wait_batch(batch_id: int, total: int, deadline: float) -> None:
    """Until every task of the batch has ended; raises on a failed one or the deadline."""
    from django.db.models import Count

    from tasks.models import Status, Task

    while True:
        counts = dict(
            Task.objects.filter(batch_id=batch_id)
            .values_list("status")
            .annotate(n=Count("pk"))
            .values_list("status", "n")
        )
        if counts.get(Status.FAILED) or counts.get(Status.CANCELED):
            failed = Task.objects.filter(batch_id=batch_id, status=Status.FAILED).first()
            detail = f"{failed.error_type}: {failed.error_message}" if failed else "canceled"
            raise RuntimeError(f"comfyweb: tasks did not complete ({counts}); e.g. {detail}")
        if counts.get(Status.COMPLETED, 0) == total:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"comfyweb: not done by the deadline: {counts}")
        time.sleep(0.2)


@dataclass
class Serving:
    """A running `serve` with the simulators registered as its fleet."""

    serve: Child
    team: Any
    user: Any
    others: int  # enabled servers in the database besides the bench's


@contextlib.contextmanager
def serving(urls: list[str], speeds: list[float], folder: pathlib.Path) -> Iterator[Serving]:
    """`manage.py serve` on a fresh data directory, the simulators as its servers,
    every one healthy with its catalogue read; stopped on the way out."""
    data_dir = folder / "data"
    data_dir.mkdir(parents=True)
    env = serve_env(data_dir)
    port = free_port()
    argv = [sys.executable, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(port)]
    serve = Child("serve", argv, env, folder / "serve.log")
    try:
        serve.wait_for(r"ComfyWeb is running at", timeout=START_TIMEOUT)
        _wait_healthz(f"http://127.0.0.1:{port}/healthz")
        setup_django(env)
        team, user, others = register_fleet(urls, speeds)
        wait_fleet_ready(len(urls))
        yield Serving(serve, team, user, others)
    except Exception:
        print(f"serve's log (tail):\n{serve.stderr_tail()}", file=sys.stderr)
        raise
    finally:
        serve.stop()


def run_comfyweb(
    urls: list[str], speeds: list[float], jobs: list[Job], folder: pathlib.Path, deadline: float
) -> Outcome:
    with serving(urls, speeds, folder) as running:
        pids = _child_pids(running.serve)
        outcome = _submit_and_wait(running.team, running.user, jobs, pids, deadline)
        restarted = [
            name for name, pid in _child_pids(running.serve).items() if pids.get(name) != pid
        ]
        if restarted:
            outcome.notes.append(f"restarted by serve during the run: {', '.join(restarted)}")
        if running.others:
            outcome.notes.append(f"{running.others} other enabled servers in DATABASE_URL's fleet")
        outcome.spans = asyncio.run(read_spans(urls, set(outcome.completed)))
        outcome.notes += _comfyweb_notes(outcome)
        return outcome


def _wait_healthz(url: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} never answered 200")


def _child_pids(serve: Child) -> dict[str, int]:
    pids = {}
    for line in serve.lines:
        if match := STARTED.search(line):
            pids[match.group(1)] = int(match.group(2))
    return {name: pids[name] for name in ("worker", "monitor", "web") if name in pids}


def _submit_and_wait(team, user, jobs: list[Job], pids: dict[str, int], deadline: float):
    from tasks.models import Task
    from tasks.submission import submit_runs
    from workflows.templating import Run

    runs = [Run(job.graph(), {}) for job in jobs]
    cpu_before = {name: tree_cpu_seconds(pid) for name, pid in pids.items()}
    started = time.time()
    result = submit_runs(team=team, submitter=user, runs=runs, description="bench_makespan")
    submitted = time.time()
    wait_batch(result.batch.pk, len(jobs), deadline)
    cpu = {name: tree_cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
    rows = Task.objects.filter(batch_id=result.batch.pk).values_list(
        "prompt_id", "dispatched_at", "finished_at", "attempts"
    )
    outcome = Outcome(POLICIES["comfyweb"], started, 0.0, {})
    for prompt_id, dispatched, finished, _ in rows:
        outcome.dispatched[prompt_id] = dispatched.timestamp()
        outcome.completed[prompt_id] = finished.timestamp()
    outcome.ended = ended = max(outcome.completed.values())
    outcome.notes.append(f"submit_runs of {len(jobs)} runs took {submitted - started:.2f} s")
    retried = sum(attempts > 1 for *_, attempts in rows)
    if retried:
        outcome.notes.append(f"{retried} tasks ran more than once (the last run is counted)")
    wall = ended - started
    for name in ("worker", "monitor", "web"):
        if name in cpu:
            outcome.notes.append(
                f"CPU {name}: {cpu[name] * 1000 / len(jobs):.0f} ms per task "
                f"({cpu[name]:.1f} s, {cpu[name] / wall:.0%} of a core over the run)"
            )
    # However the work is spread, the batch cannot end before the machine has
    # given ComfyWeb's processes this much CPU.
    needed = cpu.get("worker", 0.0) + cpu.get("monitor", 0.0)
    cores = os.cpu_count() or 1
    outcome.notes.append(
        f"worker + monitor CPU for the batch {needed:.1f} s = {needed / cores:.1f} s of the "
        f"whole {cores}-CPU machine (a floor under the makespan, whatever the policy)"
    )
    return outcome


def _refills(outcome: Outcome) -> list[float]:
    """Prompt end → the next task claimed for that server, while tasks were waiting.

    With max_inflight 2 a server's k-th prompt end frees the slot its (k+2)-th
    task fills; a server whose later tasks went elsewhere just has fewer samples.
    """
    refills = []
    for server in {span.server for span in outcome.spans.values()}:
        spans = outcome.on_server(server)
        ends = sorted(span.end for span in spans)
        claims = sorted(outcome.dispatched[span.prompt_id] for span in spans)
        refills += [claim - end for end, claim in zip(ends, claims[MAX_INFLIGHT:], strict=False)]
    return refills


def _comfyweb_notes(outcome: Outcome) -> list[str]:
    lags = [outcome.completed[p] - span.end for p, span in outcome.spans.items()]
    first = min(span.start for span in outcome.spans.values())
    refills = _refills(outcome)
    return [
        f"first prompt started {first - outcome.started:.2f} s after the submission began",
        f"slot refill (a prompt's end → the next task claimed for its server; "
        f"{len(refills)} refills): p50 {percentile(refills, 0.5) * 1000:.0f} ms, "
        f"p90 {percentile(refills, 0.9) * 1000:.0f} ms, "
        f"p99 {percentile(refills, 0.99) * 1000:.0f} ms",
        f"completed in ComfyWeb after the prompt ended (output collection): "
        f"p50 {percentile(lags, 0.5):.3f} s, p90 {percentile(lags, 0.9):.3f} s, "
        f"max {max(lags):.3f} s",
    ]


# -- the run ---------------------------------------------------------------------------------


def parse_options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"preset for `make bench`: speeds {QUICK['speeds']}, {QUICK['jobs']} jobs, "
        f"time scale {QUICK['time_scale']} (options given explicitly still win)",
    )
    parser.add_argument("--speeds", help=f"server speeds (default the issue's {ISSUE_SPEEDS})")
    parser.add_argument("--servers", type=int, help="servers (the speeds repeat; default: as many)")
    parser.add_argument("--jobs", type=int, help="jobs (default 400)")
    parser.add_argument(
        "--time-scale",
        type=float,
        help="multiplies every duration (default 1; 0.1 = 10 times faster)",
    )
    parser.add_argument("--seed", type=int, default=15, help="seed of the job list (default 15)")
    parser.add_argument(
        "--workflows", type=int, default=1, help="workflows the jobs belong to (lock policy)"
    )
    parser.add_argument(
        "--policies",
        default=",".join(POLICIES),
        help=f"comma-separated subset of {','.join(POLICIES)} (default all)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the temporary directory (serve's and the simulators' logs)",
    )
    options = parser.parse_args(argv)
    preset = QUICK if options.quick else FULL
    for name, value in preset.items():
        if getattr(options, name) is None:
            setattr(options, name, value)
    try:
        speeds = [float(part) for part in options.speeds.split(",") if part.strip()]
    except ValueError:
        parser.error(f"--speeds: not numbers: {options.speeds!r}")
    if not speeds or min(speeds) <= 0:
        parser.error("--speeds must be positive numbers")
    count = options.servers or len(speeds)
    options.speed_list = [speeds[i % len(speeds)] for i in range(count)]
    options.policy_list = [p.strip() for p in options.policies.split(",") if p.strip()]
    unknown = set(options.policy_list) - POLICIES.keys()
    if unknown or not options.policy_list:
        parser.error(f"--policies: unknown {sorted(unknown)}; choose from {list(POLICIES)}")
    if options.jobs < 1 or options.time_scale <= 0 or options.workflows < 1 or count < 1:
        parser.error("--jobs, --servers, --workflows and --time-scale must be positive")
    return options


def rerun_command(options: argparse.Namespace) -> str:
    speeds = ",".join(f"{s:g}" for s in options.speed_list)
    return (
        f".venv/bin/python bench/bench_makespan.py --speeds {speeds} --jobs {options.jobs} "
        f"--time-scale {options.time_scale:g} --seed {options.seed} "
        f"--workflows {options.workflows} --policies {','.join(options.policy_list)}"
    )


def machine() -> str:
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"],  # noqa: S607 - git from PATH, as make does
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.strip()
    workers = os.environ.get("WORKER_PROCESSES", "2 (default)")
    database = "DATABASE_URL" if os.environ.get("DATABASE_URL") else "SQLite"
    redis = "REDIS_URL" if os.environ.get("REDIS_URL") else "embedded Redis"
    return (
        f"machine: {os.cpu_count()} CPUs, {platform.platform()}, Python "
        f"{platform.python_version()}, {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; "
        f"ComfyWeb {commit or '?'} at the start, {database}, {redis}, WORKER_PROCESSES={workers}"
    )


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    speeds = options.speed_list
    jobs = make_jobs(options.jobs, options.seed, options.workflows)
    work = sum(job.work for job in jobs) * options.time_scale
    lower_bound = work / sum(speeds)
    signal.signal(signal.SIGTERM, _raise_interrupt)  # stop the children on a TERM too
    print(
        f"fleet: {len(speeds)} servers, speeds {','.join(f'{s:g}' for s in speeds)}; "
        f"{len(jobs)} jobs, {work:.1f} s of work at time scale {options.time_scale:g}; "
        f"lower bound {lower_bound:.2f} s",
        flush=True,
    )
    described = machine()  # before the run: the checkout may change under a long one
    outcomes: list[Outcome] = []
    folder = tempfile.mkdtemp(prefix="bench-makespan-", dir="/tmp")
    try:
        for round_number, policy in enumerate(options.policy_list):
            root = pathlib.Path(folder) / f"{round_number}-{policy}"
            root.mkdir()
            deadline_span = 120 + 10 * lower_bound
            with (
                simulators(speeds, options.time_scale, root / "sims") as urls,
                BusySampler() as busy,
            ):
                deadline = time.monotonic() + START_TIMEOUT * 2 + deadline_span
                if policy == "comfyweb":
                    outcome = run_comfyweb(urls, speeds, jobs, root, deadline)
                else:
                    lock = LOCK_SECONDS * options.time_scale
                    deadline = time.monotonic() + deadline_span
                    outcome = asyncio.run(run_client_side(policy, urls, jobs, lock, deadline))
            outcome.notes.append(busy.summary(outcome.started, outcome.ended))
            outcomes.append(outcome)
            print(f"  {outcome.policy}: makespan {outcome.makespan:.2f} s", flush=True)
    finally:
        if options.keep:
            print(f"kept the logs and data in {folder}", flush=True)
        else:
            shutil.rmtree(folder, ignore_errors=True)
    report(outcomes, speeds, work, lower_bound, options, described)
    return 0


def report(
    outcomes: list[Outcome],
    speeds: list[float],
    work: float,
    lower_bound: float,
    options: argparse.Namespace,
    described: str,
) -> None:
    ours = next((o.makespan for o in outcomes if o.policy == POLICIES["comfyweb"]), None)
    print()
    print(f"{'policy':<28} {'makespan (s)':>12} {'÷ lower bound':>14} {'÷ comfyweb':>11}")
    for outcome in outcomes:
        ratio = f"{outcome.makespan / ours:.2f}" if ours else "—"
        print(
            f"{outcome.policy:<28} {outcome.makespan:>12.2f} "
            f"{outcome.makespan / lower_bound:>14.2f} {ratio:>11}"
        )
    print(f"{'lower bound':<28} {lower_bound:>12.2f} {1:>14.2f}")
    for outcome in outcomes:
        print(f"\n{outcome.policy}:")
        lost = lost_capacity(outcome, speeds, work)
        parts = ", ".join(f"{cause} {seconds:.2f} s" for cause, seconds in lost.items())
        print(f"  above the lower bound {outcome.makespan - lower_bound:.2f} s: {parts}")
        print(f"  {gap_summary(outcome, speeds)}")
        print(f"  {server_summary(outcome, speeds)}")
        for note in outcome.notes:
            print(f"  {note}")
    print()
    print(described)
    print(f"rerun: {rerun_command(options)}")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: every process this run started is stopped", file=sys.stderr)
        sys.exit(130)
