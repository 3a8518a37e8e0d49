"""End to end through the real processes: `serve --demo 3` (qcluster, monitor, Redis, 3 simulators).

Tasks are submitted from a separate `manage.py shell` (as the web process would),
then the database file is read directly while the worker dispatches, the
monitor follows the prompts and the outputs are collected.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from tests.serve_process import PROJECT, ServeProcess, free_port

pytestmark = pytest.mark.timeout(300)

TASKS = 60
HEALTHY = (
    "SELECT count(*) FROM servers_serverstate"
    " WHERE health = 'healthy' AND capabilities_at IS NOT NULL"
)
SUBMIT = """
import json
from django.db import transaction
from django.contrib.auth import get_user_model
from teams.models import Membership, Role, Team
from tasks.submission import submit_runs
from workflows.templating import Run

team = Team.objects.create(name="E2E")
user = get_user_model().objects.create_user("e2e")
Membership.objects.create(team=team, user=user, role=Role.MEMBER)
per = {n} // 4
with transaction.atomic():  # all visible at once: the order is the queue's, not ours
    for priority in (0, 1, 2, 3):
        runs = [
            Run({{"1": {{"class_type": "EmptyImage", "inputs": {{"width": 8, "height": 8,
                "batch_size": 1, "color": priority * 1000 + i}}}},
                 "2": {{"class_type": "SaveImage", "inputs": {{"images": ["1", 0],
                "filename_prefix": "e2e"}}}}}}, {{"i": i}})
            for i in range(per)
        ]
        submit_runs(team=team, submitter=user, runs=runs, priority=priority)
print("submitted")
"""


FAILOVER_SUBMIT = """
import json
from django.contrib.auth import get_user_model
from teams.models import Membership, Role, Team
from tasks.submission import submit_runs
from workflows.templating import Run
from tests.factories import trivial_graph

team = Team.objects.create(name="Failover")
user = get_user_model().objects.create_user("failover")
Membership.objects.create(team=team, user=user, role=Role.MEMBER)
runs = []
for i in range({n}):
    graph = trivial_graph(seed=i)
    graph["3"]["inputs"]["steps"] = 25  # about half a second per prompt
    runs.append(Run(graph, {{"seed": i}}))
submit_runs(team=team, submitter=user, runs=runs)
print("submitted")
"""


def serve_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DEBUG"}}
    return env | {
        "COMFYWEB_DATA_DIR": str(data_dir),
        "SECRET_KEY": "serve-test-secret",
        "LOG_FORMAT": "text",
        "WORKER_PROCESSES": "2",  # two dispatchers may run at once
    }


def start_demo(data_dir: Path) -> ServeProcess:
    data_dir.mkdir(parents=True)
    port = free_port()
    stderr = (data_dir.parent / "serve-stderr.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port), "--demo", "3"],
        cwd=PROJECT,
        env=serve_env(data_dir),
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    serve = ServeProcess(process, f"http://127.0.0.1:{port}/")

    def collect() -> None:
        for line in process.stdout:
            serve.lines.append(line.rstrip("\n"))

    threading.Thread(target=collect, daemon=True).start()
    serve.wait_for_line("ComfyWeb is running at", timeout=120)
    serve.wait_healthy()
    return serve


def query(db: Path, sql: str, *args) -> list[tuple]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=20) as connection:
        return connection.execute(sql, args).fetchall()


def wait_for(condition, timeout: float, what: str) -> None:
    """A bound on waiting for the processes, not a timed assertion."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def submit(data_dir: Path, script: str) -> None:
    submitted = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=PROJECT,
        env=serve_env(data_dir),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "submitted" in submitted.stdout, submitted.stderr[-3000:]


def stamp(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_sixty_tasks_at_mixed_priorities_through_the_real_worker_and_monitor(tmp_path):
    data_dir = tmp_path / "data"
    serve = start_demo(data_dir)
    db = data_dir / "comfyweb.sqlite3"
    try:
        wait_for(lambda: query(db, HEALTHY)[0][0] == 3, 60, "three healthy demo servers")
        submit(data_dir, SUBMIT.format(n=TASKS))
        done = "SELECT count(*) FROM tasks_task WHERE status IN ('completed', 'failed', 'canceled')"
        wait_for(lambda: query(db, done)[0][0] == TASKS, 180, f"{TASKS} finished tasks")

        tasks = query(
            db,
            "SELECT id, status, priority, server_id, prompt_id, dispatched_at, attempts "
            "FROM tasks_task",
        )
        statuses = {row[1] for row in tasks}
        assert statuses == {"completed"}, query(
            db, "SELECT id, error_type, error_message FROM tasks_task WHERE status != 'completed'"
        )
        # Every task has its PNG stored.
        outputs = query(db, "SELECT task_id, file FROM tasks_output")
        assert {row[0] for row in outputs} == {row[0] for row in tasks}
        files = [data_dir / "media" / name for _, name in outputs]
        assert all(path.read_bytes().startswith(b"\x89PNG") for path in files)

        # Higher priorities were sent first (one team, no retries: the queue's order).
        assert {row[6] for row in tasks} == {1}  # each ran once
        by_dispatch = sorted(tasks, key=lambda row: stamp(row[5]))
        priorities = [row[2] for row in by_dispatch]
        assert priorities == sorted(priorities, reverse=True)

        # No task was sent twice: every prompt a server holds is one task's.
        servers = query(db, "SELECT id, base_url, max_inflight FROM servers_server")
        seen: list[str] = []
        for _, base_url, _ in servers:
            seen += list(httpx.get(f"{base_url}/history", timeout=10).json())
        assert sorted(seen) == sorted(row[4] for row in tasks)

        # Per-server in-flight never exceeded: replay each server's timeline.
        # A slot is taken when a task is dispatched and given back when its prompt
        # is done on the server (before its outputs are collected) or it leaves.
        events = query(
            db,
            "SELECT e.task_id, e.at, e.from_status, e.to_status, t.server_id, e.data "
            "FROM tasks_taskevent e JOIN tasks_task t ON t.id = e.task_id "
            "WHERE e.to_status != '' OR e.data LIKE '%slot_freed%' ORDER BY e.at, e.id",
        )
        limits = {server_id: limit for server_id, _, limit in servers}
        current: dict[int, int] = defaultdict(int)
        holding: set[int] = set()
        active = ("dispatched", "running")
        for task_id, _, before, after, server_id, data in events:
            if after in active and before not in active:
                current[server_id] += 1
                holding.add(task_id)
                assert current[server_id] <= limits[server_id]
            elif task_id in holding and ("slot_freed" in data or after not in active):
                current[server_id] -= 1
                holding.discard(task_id)
        assert json.dumps(dict(current)) == json.dumps(dict.fromkeys(current, 0))
    finally:
        serve.stop()


def test_a_server_dying_mid_batch_has_its_tasks_retried_on_the_others(tmp_path):
    from servers.simulator.control import simulate_outage

    data_dir = tmp_path / "data"
    serve = start_demo(data_dir)
    db = data_dir / "comfyweb.sqlite3"
    count = 30
    try:
        wait_for(lambda: query(db, HEALTHY)[0][0] == 3, 60, "three healthy demo servers")
        submit(data_dir, FAILOVER_SUBMIT.format(n=count))
        on_a_server = (
            "SELECT t.server_id, s.base_url FROM tasks_task t"
            " JOIN servers_server s ON s.id = t.server_id WHERE t.status = 'running'"
        )
        wait_for(lambda: query(db, on_a_server), 60, "a task running")
        victim_id, victim_url = query(db, on_a_server)[0]
        victims = {
            row[0]
            for row in query(
                db,
                "SELECT id FROM tasks_task"
                " WHERE server_id = ? AND status IN ('dispatched', 'running')",
                victim_id,
            )
        }
        asyncio.run(simulate_outage(victim_url, 20))
        done = "SELECT count(*) FROM tasks_task WHERE status IN ('completed', 'failed', 'canceled')"
        wait_for(lambda: query(db, done)[0][0] == count, 240, f"{count} finished tasks")
        rows = query(db, "SELECT id, status, server_id, attempts FROM tasks_task")
        assert {row[1] for row in rows} == {"completed"}, query(
            db,
            "SELECT t.id, t.error_type, t.error_message, e.from_status, e.to_status, e.message"
            " FROM tasks_task t JOIN tasks_taskevent e ON e.task_id = t.id"
            " WHERE t.status != 'completed' ORDER BY e.at",
        )
        # One that was on it a moment before the outage may have just finished.
        retried = [row for row in rows if row[0] in victims and row[3] >= 2]
        assert retried
        events = query(
            db,
            "SELECT count(*) FROM tasks_taskevent WHERE task_id = ? AND to_status = 'pending'"
            " AND from_status IN ('dispatched', 'running')",
            retried[0][0],
        )
        assert events[0][0] >= 1
    finally:
        serve.stop()
