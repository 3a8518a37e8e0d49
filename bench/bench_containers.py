"""Benchmark of container pools: how long a batch waits for a pool that starts at zero.

Each run is a real `manage.py serve` (web, worker, monitor, embedded Redis and
SQLite) pointed at the two Docker test engines (../shared/docker/, `make
sim-image`), configured through the JSON API like a script would: both hosts, a
pool of the simulated-ComfyUI image (max 4 containers, 2 jobs each, idle 2 s),
then a batch of N tasks. Two policies side by side, per round:

- cold: the pool is at 0 when the batch arrives (what autoscaling costs);
- warm: the pool was scaled to 4 by staff and its containers are running first
  (the baseline: a fleet someone keeps up).

Figures (server timestamps from the API; container times from the pool's API):
submit → first task running, submit → first/all containers running, container
create → running, submit → last task finished (makespan), and for cold runs the
time from the last task finished until the pool is back at 0 containers.

    bash ../shared/docker/docker-test-hosts-up.sh && make sim-image
    .venv/bin/python bench/bench_containers.py [--tasks 20] [--rounds 2]
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from bench.common import trivial_graph
from tests.docker_engines import (
    HOSTS,
    Engine,
    connect,
    remove_labelled,
    unavailable_reason,
)
from tests.pool_deployment import PoolDeployment, parse_time, pool_deployment


@dataclass
class Run:
    policy: str
    first_running: float = 0.0  # submit → first task running
    first_container: float = 0.0  # submit → first container running (cold)
    all_containers: float = 0.0  # submit → every container running (cold)
    container_start: list[float] = field(default_factory=list)  # create → running
    makespan: float = 0.0  # submit → last task finished
    scale_down: float = 0.0  # last task finished → pool at 0 (cold)
    hosts_used: int = 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    engines = [Engine(spec, connect(spec)) for spec in HOSTS]
    if reason := unavailable_reason(engines):
        print(f"skipped: {reason}")
        return 0
    runs: list[Run] = []
    for round_number in range(args.rounds):
        for policy in ("cold", "warm"):
            deployment = f"bench-{policy}-{round_number}-{int(time.time())}"
            try:
                runs.append(one_run(policy, args.tasks, deployment))
            finally:
                for engine in engines:
                    remove_labelled(engine.client, deployment)
            print(describe(runs[-1]), flush=True)
    report(runs, args)
    return 0


def one_run(policy: str, tasks: int, deployment: str) -> Run:
    with (
        tempfile.TemporaryDirectory(prefix="bench-containers-") as tmp,
        pool_deployment(pathlib.Path(tmp) / "data", deployment) as world,
    ):
        world.add_hosts()
        pool = world.add_pool()
        if policy == "warm":
            world.call("POST", f"pools/{pool['id']}/scale", {"size": 4})
            world.wait(lambda: _running(world, pool["id"]) == 4, "4 warm containers")
        return measure(world, pool["id"], policy, tasks)


def measure(world: PoolDeployment, pool_id: int, policy: str, count: int) -> Run:
    batch = world.submit(trivial_graph(0), count)
    submitted = min(parse_time(t["created_at"]) for t in batch["tasks"])
    seen: dict[int, dict] = {}  # container id → its last view, kept after it is removed

    def finished() -> list[dict] | None:
        for container in world.pool(pool_id)["containers"]:
            seen[container["id"]] = container
        tasks = world.batch_tasks(batch["batch"])
        done = all(t["status"] in ("completed", "failed", "canceled") for t in tasks)
        return tasks if done else None

    tasks = world.wait(finished, f"{count} tasks finished", timeout=600)
    last_done = max(parse_time(t["finished_at"]) for t in tasks)
    run = Run(policy)
    run.first_running = _since(submitted, min(parse_time(t["started_at"]) for t in tasks))
    run.makespan = _since(submitted, last_done)
    run.hosts_used = len({world.server(t["server"]["id"])["url"].split(":")[1] for t in tasks})
    started = [
        (parse_time(c["created_at"]), parse_time(c["started_at"]))
        for c in seen.values()
        if c["started_at"]
    ]
    run.container_start = [_since(created, up) for created, up in started]
    if policy == "cold" and started:
        run.first_container = _since(submitted, min(up for _, up in started))
        run.all_containers = _since(submitted, max(up for _, up in started))
        world.wait(lambda: world.pool(pool_id)["containers"] == [], "pool back at 0", 300)
        run.scale_down = time.time() - last_done.timestamp()
    return run


def _running(world: PoolDeployment, pool_id: int) -> int:
    return sum(c["state"] == "running" for c in world.pool(pool_id)["containers"])


def _since(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds()


def describe(run: Run) -> str:
    text = (
        f"{run.policy}: first task running {run.first_running:.2f} s after submit, "
        f"makespan {run.makespan:.2f} s, {run.hosts_used} hosts"
    )
    if run.policy == "cold":
        text += (
            f"; containers running {run.first_container:.2f} s (first) / "
            f"{run.all_containers:.2f} s (all 4) after submit, create → running p50 "
            f"{statistics.median(run.container_start):.2f} s; back to 0 containers "
            f"{run.scale_down:.2f} s after the last task (idle 2 s)"
        )
    return text


def report(runs: list[Run], args: argparse.Namespace) -> None:
    cold = [r for r in runs if r.policy == "cold"]
    warm = [r for r in runs if r.policy == "warm"]

    def median(values: list[float]) -> float:
        return statistics.median(values)

    print()
    print(f"{args.tasks} tasks, pool max 4 x 2 jobs, two hosts, {args.rounds} rounds (medians):")
    rows = [
        ("submit → first task running", "first_running"),
        ("submit → last task finished", "makespan"),
    ]
    for label, name in rows:
        c = median([getattr(r, name) for r in cold])
        w = median([getattr(r, name) for r in warm])
        print(f"  {label:<32} cold {c:7.2f} s   warm {w:7.2f} s   cold/warm {c / w:5.2f}")
    print(f"  submit → first container running {median([r.first_container for r in cold]):7.2f} s")
    print(f"  submit → all 4 containers running {median([r.all_containers for r in cold]):6.2f} s")
    starts = [s for r in cold for s in r.container_start]
    print(f"  container create → running        {median(starts):7.2f} s (p50 of {len(starts)})")
    print(f"  last task → pool at 0 (idle 2 s)  {median([r.scale_down for r in cold]):7.2f} s")
    print(
        f"rerun: .venv/bin/python bench/bench_containers.py --tasks {args.tasks} "
        f"--rounds {args.rounds}"
    )


if __name__ == "__main__":
    sys.exit(main())
