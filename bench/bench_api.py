"""Benchmark of the JSON API in process: what one request costs ComfyWeb itself.

A fresh SQLite database and an embedded Redis in a temporary directory; Django's
test client sends requests with a Bearer token (token lookup, ninja parsing and
validation, the same services as the pages, JSON rendering; no network, no
daphne). Dispatch is not woken: the submitted tasks stay pending.

- POST /api/v1/tasks with {"workflow": id} (one task) and with "count": 10 (a batch)
- GET /api/v1/tasks?page_size=50 with N tasks in the database
- GET /api/v1/tasks/{id}

Rerun: .venv/bin/python bench/bench_api.py [--requests N]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import setup_django  # noqa: E402

GRAPH = {
    "1": {
        "class_type": "EmptyImage",
        "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0},
    },
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "b"}},
}


def _timed(call, n: int) -> list[float]:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        response = call()
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code < 300, response.content[:300]
    return times


def _report(name: str, times: list[float]) -> None:
    ordered = sorted(times)
    p95 = ordered[max(0, int(len(ordered) * 0.95) - 1)]
    print(f"{name:<44} p50 {statistics.median(times):7.2f} ms   p95 {p95:7.2f} ms   n={len(times)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        redis_process = setup_django(pathlib.Path(tmp))
        try:
            run(args.requests)
        finally:
            redis_process.terminate()


def run(n: int) -> None:
    from django.test import Client

    import tasks.submission
    from api.tokens import issue_token
    from teams.models import Membership, Role, Team
    from workflows.store import create_workflow

    tasks.submission._wake = lambda: None  # no worker in this benchmark
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user("bench", password="x")  # noqa: S106
    team = Team.objects.create(name="Bench")
    Membership.objects.create(team=team, user=user, role=Role.MEMBER)
    workflow = create_workflow(
        team=team, name="bench", description="", tags=[], graph=GRAPH, user=user
    )
    _, token = issue_token(user, "bench")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_HOST="127.0.0.1")

    def post(body):
        return client.post("/api/v1/tasks", json.dumps(body), content_type="application/json")

    _report("POST /tasks (1 task)", _timed(lambda: post({"workflow": workflow.pk}), n))
    batches = max(1, n // 10)
    _report(
        "POST /tasks (count 10, a batch)",
        _timed(lambda: post({"workflow": workflow.pk, "count": 10}), batches),
    )
    total = client.get("/api/v1/tasks").json()["count"]
    _report(
        f"GET /tasks?page_size=50 ({total} tasks)",
        _timed(lambda: client.get("/api/v1/tasks", {"page_size": 50}), n),
    )
    task_id = client.get("/api/v1/tasks").json()["items"][0]["id"]
    _report("GET /tasks/{id}", _timed(lambda: client.get(f"/api/v1/tasks/{task_id}"), n))
    print("\nRerun: .venv/bin/python bench/bench_api.py [--requests N]")


if __name__ == "__main__":
    main()
