"""Benchmark of dispatch: submit → prompt accepted, and tasks/s across 3 simulated servers.

Everything is local and bounded: a fresh SQLite database and an embedded Redis
in a temporary directory, three simulators on 127.0.0.1 (their own event loop
in a background thread), and ComfyWeb's real code — `submit_runs`, the dispatch
job's `dispatch_pending` (claims under the claim lock, concurrent POSTs), and
`transition` — called in-process. The django-q2 broker hop (Redis) is not in
these figures; in `serve` it adds the worker's poll of the queue.

1. Latency: N times, one task is submitted to an idle fleet and dispatched; the
   time from before `submit_runs` to the server's 200 for POST /prompt is
   recorded (p50/p99).
2. Throughput: M trivial tasks are submitted at once (max_inflight 2 per
   server, as in the demo); the main thread dispatches in a loop while a second
   thread, standing in for the monitor, reads each server's /history and
   completes finished tasks as the execution handler would (freeing slots),
   until all are completed. Prints completed tasks/s.

Every state change also runs whatever listens to `task_transitioned` (live
publishing to browsers), as in production; `--no-listeners` leaves them out to
show dispatch's own cost.

Rerun: .venv/bin/python bench/bench_dispatch.py [--requests N] [--tasks M] [--no-listeners]
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import statistics
import sys
import tempfile
import threading
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import percentile, setup_django, trivial_graph  # noqa: E402

GUARD_SECONDS = 120.0


class _Sims:
    """Simulators serving from their own thread's loop (dispatch itself runs asyncio.run)."""

    def __init__(self, root: pathlib.Path, count: int) -> None:
        from servers.simulator import SimulatedComfyUI, SimulatorConfig

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.sims = [
            SimulatedComfyUI(
                "127.0.0.1", 0, data_dir=root / f"sim-{i}", config=SimulatorConfig(time_scale=0.0)
            )
            for i in range(count)
        ]
        for sim in self.sims:
            self.run(sim.start())
        self._clients: list[Any] = []

    def clients(self) -> list[Any]:
        """One HTTP client per server, kept (a new client loads the CA bundle: ~30 ms)."""
        from servers.comfyui import ComfyUIClient

        if not self._clients:
            self._clients = [ComfyUIClient(sim.base_url) for sim in self.sims]
        return self._clients

    def run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def stop(self) -> None:
        for client in self._clients:
            self.run(client.aclose())
        for sim in self.sims:
            self.run(sim.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def _register(sims: _Sims) -> list[Any]:
    from django.utils import timezone

    from servers.models import Server, ServerState

    now = timezone.now()
    servers = []
    for sim in sims.sims:
        server = Server.objects.create(name=f"sim-{sim.port}", base_url=sim.base_url)
        ServerState.objects.filter(server=server).update(
            health="healthy",
            last_checked_at=now,
            load_checked_at=now,
            capabilities_at=now,
            node_classes=["EmptyImage", "SaveImageWebsocket"],
            model_files={},
        )
        servers.append(server)
    return servers


def _keep_fresh() -> None:
    # No monitor runs here: keep the load data fresh so the balancer stays in
    # balanced mode (the monitor would write this every few seconds).
    from django.utils import timezone

    from servers.models import ServerState

    ServerState.objects.update(load_checked_at=timezone.now(), last_checked_at=timezone.now())


def _finished(sims: _Sims) -> set[str]:
    async def look() -> set[str]:
        done: set[str] = set()
        for client in sims.clients():
            done |= set(await client.get_histories())
        return done

    return sims.run(look())


def _complete(prompt_ids: set[str]) -> int:
    from tasks.models import Status, Task
    from tasks.transitions import transition

    done = 0
    active = Task.objects.filter(status__in=Status.active(), prompt_id__in=prompt_ids)
    for task_id, prompt_id in active.values_list("pk", "prompt_id"):
        done += transition(
            task_id,
            Status.active(),
            Status.COMPLETED,
            message="done (bench)",
            where={"prompt_id": prompt_id},
        )
    return done


def _latency(sims: _Sims, team, user, requests: int) -> list[float]:
    from tasks.dispatch import dispatch_pending
    from tasks.submission import submit_runs
    from workflows.templating import Run

    samples = []
    for i in range(requests):
        _keep_fresh()
        started = time.perf_counter()
        submit_runs(team=team, submitter=user, runs=[Run(trivial_graph(i % 256), {})])
        sent = dispatch_pending()
        samples.append((time.perf_counter() - started) * 1000)
        assert sent == 1, f"round {i}: {sent} sent"
        _wait_all_completed(sims)
    return samples


def _wait_all_completed(sims: _Sims) -> None:
    from tasks.models import Status, Task

    deadline = time.monotonic() + GUARD_SECONDS
    while Task.objects.filter(status__in=Status.active()).exists():
        _complete(_finished(sims))
        if time.monotonic() > deadline:
            raise TimeoutError("tasks did not finish")


def _throughput(sims: _Sims, team, user, tasks: int) -> float:
    from django.db import close_old_connections

    from tasks.dispatch import dispatch_pending
    from tasks.models import Status, Task
    from tasks.submission import submit_runs
    from workflows.templating import Run

    runs = [Run(trivial_graph(i % 256), {"n": i}) for i in range(tasks)]
    started = time.perf_counter()
    result = submit_runs(team=team, submitter=user, runs=runs)
    ids = [task.pk for task in result.tasks]
    stop = threading.Event()

    def monitor() -> None:
        # Stands in for the monitor process: it completes what the servers finished.
        try:
            while not stop.is_set():
                _complete(_finished(sims))
        finally:
            close_old_connections()

    watcher = threading.Thread(target=monitor, daemon=True)
    watcher.start()
    deadline = time.monotonic() + GUARD_SECONDS
    try:
        while Task.objects.filter(pk__in=ids).exclude(status=Status.COMPLETED).exists():
            _keep_fresh()
            if not dispatch_pending():
                time.sleep(0.002)  # wake-ups would come from the monitor here
            if time.monotonic() > deadline:
                raise TimeoutError("throughput run did not finish")
    finally:
        stop.set()
        watcher.join(timeout=10)
    return tasks / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50, help="latency rounds (default 50)")
    parser.add_argument("--tasks", type=int, default=300, help="throughput tasks (default 300)")
    parser.add_argument(
        "--no-listeners",
        action="store_true",
        help="disconnect task_transitioned listeners (live publishing): dispatch's own cost",
    )
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-dispatch-", dir="/tmp") as folder:
        data_dir = pathlib.Path(folder)
        redis_process = setup_django(data_dir)
        sims = _Sims(data_dir, 3)
        try:
            from django.contrib.auth import get_user_model

            from teams.models import Membership, Role, Team

            if options.no_listeners:
                from tasks.transitions import task_transitioned

                task_transitioned.receivers.clear()
                task_transitioned.sender_receivers_cache.clear()
            _register(sims)
            team = Team.objects.create(name="Bench")
            user = get_user_model().objects.create_user("bench")
            Membership.objects.create(team=team, user=user, role=Role.MEMBER)
            samples = _latency(sims, team, user, options.requests)
            rate = _throughput(sims, team, user, options.tasks)
        finally:
            sims.stop()
            redis_process.terminate()
            redis_process.wait(timeout=10)
    print(
        f"submit → prompt accepted by an idle server ({options.requests} rounds): "
        f"p50 {statistics.median(samples):.1f} ms, p99 {percentile(samples, 0.99):.1f} ms"
    )
    print(
        f"throughput, {options.tasks} trivial tasks on 3 simulators (max_inflight 2): "
        f"{rate:.0f} tasks/s"
    )
    listeners = "without" if options.no_listeners else "with"
    print(f"({listeners} task_transitioned listeners such as live publishing)")
    print(
        "rerun: .venv/bin/python bench/bench_dispatch.py [--requests N] [--tasks M] "
        "[--no-listeners]"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
