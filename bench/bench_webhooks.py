"""Benchmark of webhook delivery latency (issue 18 item 1): task completed → receiver got it.

A real `manage.py serve` (fresh data directory: SQLite and an embedded Redis, its
own worker, monitor and web, `--demo N` simulated ComfyUI servers) with
COMFYWEB_WEBHOOKS_ALLOW_PRIVATE on, and a receiver on 127.0.0.1 in this process
(`tests.webhooks.receiver`, which checks every signature as the Standard Webhooks
spec says). One endpoint subscribed to `task.completed`; the tasks go in through
`POST /api/v1/tasks` in submissions of up to 50 runs. For each task, latency =
the moment the receiver read the request minus the task's `finished_at` (the
completed transition, committed by the worker after its outputs were collected),
both on this machine's clock. The delivery is written on that transition, queued
to the worker and sent by it: one queue hop plus one HTTP request.

Rerun: .venv/bin/python bench/bench_webhooks.py [--tasks 200] [--servers 3] [--workers 2]
(`--quick`, in `make bench`: 20 tasks)
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import tempfile
import time
from datetime import datetime

import httpx

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import percentile  # noqa: E402
from tests.serve_process import launch, manage  # noqa: E402
from tests.webhooks.receiver import Receiver, verify  # noqa: E402

GRAPH = {
    "1": {
        "class_type": "EmptyImage",
        "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 65280},
    },
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "hook"}},
}
PER_SUBMISSION = 50


def run(tasks: int, servers: int, workers: int, timeout: float) -> None:
    receiver = Receiver()
    with tempfile.TemporaryDirectory(prefix="bench-webhooks-") as folder:
        serve = launch(
            pathlib.Path(folder) / "data",
            "--demo",
            str(servers),
            COMFYWEB_WEBHOOKS_ALLOW_PRIVATE="true",
            WORKER_PROCESSES=str(workers),
        )
        try:
            measure(serve, receiver, tasks, timeout)
        finally:
            serve.stop()
            receiver.close()


def measure(serve, receiver: Receiver, tasks: int, timeout: float) -> None:
    token = manage(serve, "create_api_token", serve.username, "--name", "bench").strip()
    api = httpx.Client(
        base_url=f"{serve.url}api/v1/", headers={"Authorization": f"Bearer {token}"}, timeout=60
    )
    made = api.post("webhooks", json={"url": receiver.url(), "events": ["task.completed"]})
    made.raise_for_status()
    secret = made.json()["secret"]
    started = time.monotonic()
    left = tasks
    while left:
        count = min(PER_SUBMISSION, left)
        api.post("tasks", json={"graph": GRAPH, "count": count}).raise_for_status()
        left -= count
    received = receiver.wait_for(tasks, timeout=timeout)
    elapsed = time.monotonic() - started
    if len(received) < tasks:
        raise SystemExit(f"only {len(received)} of {tasks} deliveries in {timeout:.0f} s")
    report(received[:tasks], secret, elapsed, api, made.json()["id"])


def report(received, secret: str, elapsed: float, api: httpx.Client, endpoint_id: int) -> None:
    latencies = [(r.at - _at(r.payload["data"]["finished_at"])) * 1000 for r in received]
    ids = {r.webhook_id for r in received}
    tasks = {r.payload["data"]["id"] for r in received}
    signed = sum(verify(secret, r.headers, r.body) for r in received)
    log = api.get(f"webhooks/{endpoint_id}/deliveries").json()  # the newest 100
    sent_ms = [a["latency_ms"] for d in log for a in d["attempt_log"] if a["latency_ms"]]
    finished = {r.webhook_id: _at(r.payload["data"]["finished_at"]) for r in received}
    written_ms = [(_at(d["created_at"]) - finished[d["webhook_id"]]) * 1000 for d in log]
    picked_ms = [(_at(d["attempt_log"][-1]["at"]) - _at(d["created_at"])) * 1000 for d in log]
    print(f"webhook delivery: {len(received)} tasks completed on simulated servers")
    print(f"  signatures verified: {signed}/{len(received)}")
    print(f"  distinct webhook-ids: {len(ids)}, distinct tasks: {len(tasks)}")
    print(
        "  task completed -> receiver got it: "
        f"p50 {percentile(latencies, 0.5):.1f} ms, p99 {percentile(latencies, 0.99):.1f} ms, "
        f"max {max(latencies):.1f} ms, mean {statistics.fmean(latencies):.1f} ms"
    )
    if log:
        print(
            f"  of which (newest {len(log)}): completed -> delivery row written "
            f"p50 {percentile(written_ms, 0.5):.1f} ms; row -> POST answered "
            f"p50 {percentile(picked_ms, 0.5):.1f} ms, p99 {percentile(picked_ms, 0.99):.1f} ms"
        )
    if sent_ms:
        print(
            f"  the POST itself (worker's log, newest {len(sent_ms)}): "
            f"p50 {percentile(sent_ms, 0.5):.1f} ms, p99 {percentile(sent_ms, 0.99):.1f} ms"
        )
    print(f"  whole run (submit to last delivery): {elapsed:.1f} s")
    print("rerun: .venv/bin/python bench/bench_webhooks.py [--tasks N] [--servers N] [--workers N]")


def _at(moment: str) -> float:
    return datetime.fromisoformat(moment).timestamp()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="20 tasks (make bench)")
    parser.add_argument("--servers", type=int, default=3, help="simulated servers (--demo)")
    parser.add_argument("--workers", type=int, default=2, help="WORKER_PROCESSES")
    parser.add_argument("--timeout", type=float, default=600, help="seconds for every delivery")
    options = parser.parse_args(argv)
    if options.quick:
        options.tasks = 20
    run(options.tasks, options.servers, options.workers, options.timeout)


if __name__ == "__main__":
    main()
