"""Benchmark of the balancer: how long one `choose()` takes for fleets of 10, 100, 1000.

Pure CPU, no database: builds a seeded random fleet (mixed health, load,
weights, capabilities, affinity) and times `choose()` for a graph that needs a
checkpoint and a handful of nodes. Prints the median and p95 per call. The run
is bounded by a repeat count per size, so it finishes in a few seconds.

Rerun: .venv/bin/python bench/bench_balancer.py [--repeat N] [--sizes 10,100,1000]
"""

from __future__ import annotations

import argparse
import pathlib
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from servers.balancer import Policy, ServerSnapshot, choose
from servers.requirements import Requirements

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
NODES = [f"Node{n}" for n in range(200)]
NEEDED = frozenset(NODES[:8])
CHECKPOINTS = [f"model-{n}.safetensors" for n in range(20)]


def _fleet(size: int, rng: random.Random) -> list[ServerSnapshot]:
    servers = []
    for index in range(1, size + 1):
        full_catalogue = rng.random() < 0.9
        servers.append(
            ServerSnapshot(
                id=index,
                name=f"gpu-{index}",
                enabled=rng.random() < 0.95,
                health=rng.choice(["healthy"] * 8 + ["unhealthy", "unknown"]),
                inflight=rng.randint(0, 2),
                max_inflight=2,
                queue_running=rng.randint(0, 1),
                queue_pending=rng.randint(0, 6),
                weight=rng.choice([0.5, 1.0, 1.0, 2.0, 4.0]),
                priority=rng.choice([10, 100, 100]),
                is_primary=index == 1,
                tags=frozenset(rng.sample(["a100", "sdxl", "flux"], rng.randint(0, 3))),
                node_classes=frozenset(NODES if full_catalogue else NODES[5:]),
                model_files={"checkpoints": frozenset(rng.sample(CHECKPOINTS, 10))},
                last_used_at=NOW - timedelta(seconds=rng.randint(0, 3600)),
                last_affinity_key=rng.choice(["wf", "other", ""]),
                last_affinity_at=NOW - timedelta(seconds=rng.randint(0, 60)),
                load_checked_at=NOW - timedelta(seconds=rng.randint(0, 10)),
            )
        )
    return servers


def _time(size: int, repeat: int) -> tuple[float, float, str]:
    rng = random.Random(size)
    servers = _fleet(size, rng)
    requirements = Requirements(
        workflow_key="wf",
        node_classes=NEEDED,
        model_files=frozenset({("checkpoints", CHECKPOINTS[0])}),
    )
    policy = Policy()
    samples = []
    decision = None
    for _ in range(repeat):
        started = time.perf_counter()
        decision = choose(servers, requirements, policy, NOW)
        samples.append(time.perf_counter() - started)
    samples.sort()
    p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
    summary = f"{decision.mode}, {len(decision.candidates)} candidates" if decision else ""
    return statistics.median(samples), p95, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200, help="calls timed per fleet size")
    parser.add_argument("--sizes", default="10,100,1000", help="comma-separated fleet sizes")
    args = parser.parse_args()
    print(f"choose() over seeded random fleets, {args.repeat} calls per size")
    print(f"{'servers':>8} {'median ms':>10} {'p95 ms':>8}  decision")
    for size in (int(s) for s in args.sizes.split(",")):
        median, p95, summary = _time(size, args.repeat)
        print(f"{size:>8} {median * 1000:>10.3f} {p95 * 1000:>8.3f}  {summary}")
    print("rerun: .venv/bin/python bench/bench_balancer.py [--repeat N] [--sizes 10,100,1000]")


if __name__ == "__main__":
    main()
