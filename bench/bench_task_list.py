"""Benchmark of the task list with 100,000 tasks on PostgreSQL (issue #15, goal 6).

A throwaway PostgreSQL database (created on the server of BENCH_POSTGRES_URL or
--postgres, dropped at the end) filled by `bench/task_world.py` with what a
deployment holds (six teams, 12 servers, workflows and templates, tasks over 90
days: mostly completed with outputs, some failed or canceled, a pending queue,
a few on servers; batches; every task's timeline), VACUUM ANALYZEd as
autovacuum leaves a table. Then, in process through Django's test client (no
network, no daphne; the embedded Redis serves the cache), a member of the two
largest teams asks for:

- the task list page /tasks/ (signed in): the first page, failed tasks only, the
  middle page and the last page;
- GET /api/v1/tasks with a Bearer token: the same four.

The eight requests are sent in turn, round after round (after a warm-up round),
so that whatever else the machine does weighs on each alike: wall-clock p50/p90/p99
per request, this process's CPU per request (p50: ComfyWeb's own work, less
sensitive to a busy machine than the wall clock) and the queries per request;
how busy the machine was meanwhile. Then the heaviest queries of one request of
each are run again under EXPLAIN (ANALYZE, BUFFERS) and printed.

Filling 100,000 tasks takes ~4 minutes: `--keep NAME` keeps the filled database
as NAME and `--from NAME` starts from a copy of it (migrated to this checkout),
e.g. to compare two checkouts on the same data, one after the other.

Rerun: .venv/bin/python bench/bench_task_list.py [--quick] [--tasks N] [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    BusySampler,
    percentile,
    setup_django,
    throwaway_postgres,
)

DEFAULT_SERVER = "postgres://postgres@127.0.0.1:5432/postgres"
RERUN = ".venv/bin/python bench/bench_task_list.py [--quick] [--tasks N] [--rounds N]"
PLANS_PER_SCENARIO = 2
TABLES = ("tasks_task", "tasks_output", "tasks_taskevent", "tasks_batch")


@dataclass
class Scenario:
    name: str
    url: str
    get: Callable
    wall_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    queries: int = 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="20,000 tasks, 15 rounds")
    parser.add_argument("--rounds", type=int, default=40, help="timed requests per scenario")
    parser.add_argument(
        "--postgres",
        default=_default_server(),
        help="any database on the PostgreSQL server to use (default: BENCH_POSTGRES_URL, "
        f"else DATABASE_URL if it is PostgreSQL, else {DEFAULT_SERVER})",
    )
    parser.add_argument("--keep", metavar="NAME", help="keep the filled database as NAME")
    parser.add_argument(
        "--from", dest="template", metavar="NAME", help="copy database NAME instead of filling"
    )
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.rounds = 20_000, min(args.rounds, 15)
    if not _postgres_answers(args.postgres):
        print(f"skipped: no PostgreSQL at {args.postgres} (set BENCH_POSTGRES_URL)")
        return
    name = f"comfyweb_bench_task_list_{os.getpid()}"
    with (
        tempfile.TemporaryDirectory(prefix="bench-task-list-") as tmp,
        throwaway_postgres(args.postgres, name, template=args.template) as url,
    ):
        redis_process = setup_django(pathlib.Path(tmp), url)
        try:
            run(args)
        finally:
            redis_process.terminate()


def _default_server() -> str:
    database_url = os.environ.get("DATABASE_URL", "")
    if database_url.startswith(("postgres://", "postgresql://")):
        return os.environ.get("BENCH_POSTGRES_URL", database_url)
    return os.environ.get("BENCH_POSTGRES_URL", DEFAULT_SERVER)


def _postgres_answers(url: str) -> bool:
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error:
        return False
    return True


def run(args: argparse.Namespace) -> None:
    from django.db import connection, connections
    from django.test import Client

    from api.tokens import issue_token
    from bench.task_world import build_world, world_in_database

    print(_machine())
    started = time.perf_counter()
    world = world_in_database() if args.template else build_world(args.tasks)
    with connection.cursor() as cursor:
        for table in TABLES:
            cursor.execute(f"VACUUM ANALYZE {table}")
    how = f"copied from {args.template}" if args.template else "filled"
    print(
        f"{how} in {time.perf_counter() - started:.0f} s: {world.tasks} tasks "
        f"({', '.join(f'{n} {s}' for s, n in sorted(world.counts.items()))}), "
        f"{world.outputs} outputs, {world.events} events; {_table_sizes()}"
    )
    if args.keep:
        connections.close_all()  # a template database must have no one connected
        _copy_database(args.postgres, connection.settings_dict["NAME"], args.keep)
        print(f"kept as {args.keep}: rerun on it with --from {args.keep}")
    page_client = Client(HTTP_HOST="127.0.0.1")
    page_client.force_login(world.member)
    _, token = issue_token(world.member, "bench")
    api_client = Client(HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_HOST="127.0.0.1")

    visible = api_client.get("/api/v1/tasks", {"page_size": 50}).json()
    middle, last = max(1, visible["pages"] // 2), visible["pages"]
    print(f"the member sees {visible['count']} tasks ({last} pages of 50)\n")
    scenarios = []
    for kind, path, get in (
        ("page", "/tasks/", page_client.get),
        ("api", "/api/v1/tasks", api_client.get),
    ):
        scenarios += [
            Scenario(f"{kind} {path}", path, get),
            Scenario(f"{kind} {path}?status=failed", f"{path}?status=failed", get),
            Scenario(f"{kind} {path}?page={middle} (middle)", f"{path}?page={middle}", get),
            Scenario(f"{kind} {path}?page={last} (last)", f"{path}?page={last}", get),
        ]
    with BusySampler() as sampler:
        timed_from = time.time()
        _time_in_turn(scenarios, args.rounds)
        timed_to = time.time()
    for scenario in scenarios:
        _report(scenario)
    print(sampler.summary(timed_from, timed_to))
    print("\n== EXPLAIN (ANALYZE, BUFFERS) of the heaviest queries of one request each")
    for scenario in scenarios:
        _explain(scenario)
    print(f"\nRerun: {RERUN}")


def _time_in_turn(scenarios: list[Scenario], rounds: int) -> None:
    """One request of each scenario per round; the first round only warms up."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for scenario in scenarios:
        with CaptureQueriesContext(connection) as captured:
            _get(scenario)
        scenario.queries = len(captured.captured_queries)
    for _ in range(rounds):
        for scenario in scenarios:
            wall, cpu = time.perf_counter(), time.process_time()
            _get(scenario)
            scenario.wall_ms.append((time.perf_counter() - wall) * 1000)
            scenario.cpu_ms.append((time.process_time() - cpu) * 1000)


def _get(scenario: Scenario) -> None:
    response = scenario.get(scenario.url)
    assert response.status_code == 200, (scenario.url, response.status_code, response.content[:300])


def _report(scenario: Scenario) -> None:
    wall, cpu = scenario.wall_ms, scenario.cpu_ms
    print(
        f"{scenario.name:<44} p50 {percentile(wall, 0.5):6.1f} ms  "
        f"p90 {percentile(wall, 0.9):6.1f} ms  p99 {percentile(wall, 0.99):6.1f} ms  "
        f"cpu p50 {percentile(cpu, 0.5):5.1f} ms  {scenario.queries:2} queries  n={len(wall)}"
    )


def _explain(scenario: Scenario) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        _get(scenario)
    heaviest = sorted(captured.captured_queries, key=lambda q: -float(q["time"]))
    print(f"\n-- {scenario.name}: {len(captured.captured_queries)} queries")
    for query in heaviest[:PLANS_PER_SCENARIO]:
        sql = query["sql"]
        shown = sql if len(sql) <= 300 else f"{sql[:300]} …"
        print(f"\n   {float(query['time']) * 1000:.1f} ms: {shown}")
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
            for (line,) in cursor.fetchall():
                print(f"     {line}")


def _copy_database(server_url: str, source: str, target: str) -> None:
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{target}"')
        admin.execute(f'CREATE DATABASE "{target}" TEMPLATE "{source}"')


def _table_sizes() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_size_pretty(pg_total_relation_size('tasks_task')), "
            "pg_size_pretty(pg_total_relation_size('tasks_output')), "
            "pg_size_pretty(pg_total_relation_size('tasks_taskevent'))"
        )
        task, output, event = cursor.fetchone()
    return f"on disk: tasks {task}, outputs {output}, events {event}"


def _machine() -> str:
    from django.db import connection

    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        (version,) = cursor.fetchone()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"machine: {platform.node()}, {os.cpu_count()} cores ({model}), "
        f"Python {platform.python_version()}, PostgreSQL {version}, load average {load}"
    )


if __name__ == "__main__":
    main()
