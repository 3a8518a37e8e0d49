"""Benchmark of the ETA (issue 16, part 1): how far off the expected finish times are.

A real `manage.py serve` with simulated servers of mixed speeds (as
`bench_makespan.py` starts them: weight = speed, max_inflight 2) runs two batches
of the same seeded mix of jobs (1-6 s of nominal work, runs of `--workflows`
templates differing in steps). The first batch starts with no speed measured
(the weights are the only prior); the second finds what the first taught.

While a batch runs, every `--every` seconds this process asks `tasks.eta.forecast`
(what the task pages and the API show) for every unfinished task of the batch
and keeps its expected finish. When the batch is done each of those is set
against the task's real `finished_at`. Reported per batch and per state at the
time of the estimate (pending: in our queue; on a server: dispatched or
running): the median and p90 absolute error in seconds, and the median error
relative to the time that was left (|predicted - real| ÷ (real - asked)).

Exits non-zero only on errors (a process that does not start, a failed task,
a run past its deadline), never on a figure.

Rerun: .venv/bin/python bench/bench_eta.py [--quick] [--speeds 4,2,1,...] [--jobs N]
       [--time-scale F] [--every S] [--seed S] [--workflows W] [--keep]
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_makespan import (  # noqa: E402
    START_TIMEOUT,
    _raise_interrupt,
    machine,
    make_jobs,
    serving,
    simulators,
)
from bench.common import percentile  # noqa: E402

QUICK = {"speeds": "4,2,1,1,0.5,0.5", "jobs": 40, "time_scale": 0.2}
FULL = {"speeds": "4,4,2,2,1,1,1,1,0.5,0.5,0.5,0.5", "jobs": 200, "time_scale": 0.5}
ROUNDS = ("first batch (speeds not measured yet)", "second batch (speeds learned)")


@dataclass(frozen=True)
class Guess:
    task_id: int
    asked: float  # epoch seconds
    predicted: float  # epoch seconds: the expected finish
    on_server: bool  # dispatched or running when asked (else pending)


def watch_batch(batch_id: int, total: int, every: float, deadline: float) -> list[Guess]:
    """Forecasts for the batch's unfinished tasks every `every` s, until all completed."""
    from django.utils import timezone

    from tasks import eta
    from tasks.models import Status, Task

    guesses: list[Guess] = []
    while True:
        unfinished = list(
            Task.objects.filter(batch_id=batch_id)
            .exclude(status=Status.COMPLETED)
            .only("pk", "status")
        )
        bad = [t for t in unfinished if t.status in (Status.FAILED, Status.CANCELED)]
        if bad:
            raise RuntimeError(f"task {bad[0].pk} ended {bad[0].status}")
        if not unfinished:
            return guesses
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(unfinished)} of {total} tasks not done by the deadline")
        now = timezone.now()
        for task_id, estimate in eta.forecast(unfinished, now=now).items():
            if estimate.finishes_at is None:
                continue
            status = next(t.status for t in unfinished if t.pk == task_id)
            guesses.append(
                Guess(
                    task_id,
                    now.timestamp(),
                    estimate.finishes_at.timestamp(),
                    on_server=status in Status.active(),
                )
            )
        time.sleep(every)  # a sampling period, not a wait for something to happen


Pairs = list[tuple[float, float]]  # (absolute error in s, relative error)


def errors(guesses: list[Guess], finished: dict[int, float]) -> dict[str, Pairs]:
    """(absolute error s, relative error) by state when asked."""
    by_state: dict[str, Pairs] = {"pending": [], "on a server": [], "all": []}
    for guess in guesses:
        real = finished[guess.task_id]
        absolute = abs(guess.predicted - real)
        left = max(real - guess.asked, 0.05)
        for state in ("on a server" if guess.on_server else "pending", "all"):
            by_state[state].append((absolute, absolute / left))
    return by_state


def summary(by_state: dict[str, Pairs]) -> list[str]:
    lines = []
    for state, pairs in by_state.items():
        if not pairs:
            continue
        absolute = [a for a, _ in pairs]
        relative = [r for _, r in pairs]
        lines.append(
            f"    {state:<12} {len(pairs):>6} estimates: |error| median "
            f"{statistics.median(absolute):.2f} s, p90 {percentile(absolute, 0.9):.2f} s; "
            f"relative to the time left: median {statistics.median(relative):.0%}"
        )
    return lines


def run(options: argparse.Namespace, folder: pathlib.Path) -> list[str]:
    jobs = make_jobs(options.jobs, options.seed, options.workflows)
    lines: list[str] = []
    with (
        simulators(options.speed_list, options.time_scale, folder / "sims") as urls,
        serving(urls, options.speed_list, folder) as running,
    ):
        from tasks.models import Task
        from tasks.submission import submit_runs
        from workflows.templating import Run

        work = sum(job.work for job in jobs) * options.time_scale / sum(options.speed_list)
        for round_number, title in enumerate(ROUNDS):
            # A fresh nonce per round: no simulator serves a prompt from its cache.
            runs = [Run(_renonced(job.graph(), round_number * len(jobs)), {}) for job in jobs]
            result = submit_runs(
                team=running.team, submitter=running.user, runs=runs, description=title
            )
            deadline = time.monotonic() + START_TIMEOUT + 10 * work
            guesses = watch_batch(result.batch.pk, len(jobs), options.every, deadline)
            finished = {
                pk: at.timestamp()
                for pk, at in Task.objects.filter(batch_id=result.batch.pk).values_list(
                    "pk", "finished_at"
                )
            }
            lines.append(f"  {title}:")
            lines += summary(errors(guesses, finished))
    return lines


def _renonced(graph: dict, offset: int) -> dict:
    graph["2"]["inputs"]["nonce"] += offset
    return graph


def parse_options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"preset for `make bench`: speeds {QUICK['speeds']}, {QUICK['jobs']} jobs a batch, "
        f"time scale {QUICK['time_scale']} (options given explicitly still win)",
    )
    parser.add_argument("--speeds", help=f"server speeds (default {FULL['speeds']})")
    parser.add_argument("--jobs", type=int, help=f"jobs a batch (default {FULL['jobs']})")
    parser.add_argument("--time-scale", type=float, help="multiplies every duration")
    parser.add_argument("--every", type=float, default=1.0, help="seconds between forecasts")
    parser.add_argument("--seed", type=int, default=16, help="seed of the job list")
    parser.add_argument("--workflows", type=int, default=3, help="templates the jobs run")
    parser.add_argument("--keep", action="store_true", help="keep serve's logs and data")
    options = parser.parse_args(argv)
    preset = QUICK if options.quick else FULL
    for name, value in preset.items():
        if getattr(options, name) is None:
            setattr(options, name, value)
    try:
        options.speed_list = [float(part) for part in options.speeds.split(",") if part.strip()]
    except ValueError:
        parser.error(f"--speeds: not numbers: {options.speeds!r}")
    if not options.speed_list or min(options.speed_list) <= 0:
        parser.error("--speeds must be positive numbers")
    if options.jobs < 1 or options.time_scale <= 0 or options.every <= 0:
        parser.error("--jobs, --time-scale and --every must be positive")
    return options


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    speeds = ",".join(f"{s:g}" for s in options.speed_list)
    print(
        f"fleet: {len(options.speed_list)} servers, speeds {speeds}; two batches of "
        f"{options.jobs} jobs, time scale {options.time_scale:g}, a forecast every "
        f"{options.every:g} s",
        flush=True,
    )
    described = machine()
    folder = pathlib.Path(tempfile.mkdtemp(prefix="bench-eta-", dir="/tmp"))
    try:
        lines = run(options, folder)
    finally:
        if options.keep:
            print(f"kept the logs and data in {folder}", flush=True)
        else:
            shutil.rmtree(folder, ignore_errors=True)
    print("\nexpected finish vs real finished_at:")
    print("\n".join(lines))
    print()
    print(described)
    print(
        f"rerun: .venv/bin/python bench/bench_eta.py --speeds {speeds} --jobs {options.jobs} "
        f"--time-scale {options.time_scale:g} --every {options.every:g} --seed {options.seed} "
        f"--workflows {options.workflows}"
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: every process this run started is stopped", file=sys.stderr)
        sys.exit(130)
