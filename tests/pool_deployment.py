"""A real `manage.py serve` that grows a container pool on the two test Docker engines.

Used by the end-to-end test (tests/servers/containers/test_pool_e2e.py) and the
benchmark (bench/bench_containers.py): everything goes through the JSON API with a
staff token, as a script of a studio would: hosts, a pool, a batch of tasks, then
the pool's containers and decisions as the API shows them. Containers carry the
deployment label `COMFYWEB_DEPLOYMENT`; the caller removes them by that label.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from tests.docker_engines import HOSTS, SIM_IMAGE, free_port_run
from tests.serve_process import ServeProcess, launch, manage, start_serve

# The simulator in the container, ten times faster than its default node timings.
POOL_COMMAND = [
    "python",
    "-m",
    "servers.simulator",
    "--host",
    "0.0.0.0",  # noqa: S104  inside the container: the engine publishes the port
    "--port",
    "8188",
    "--time-scale",
    "0.1",
    "--models-dir",  # where the pool mounts the models library (its default)
    "/opt/ComfyUI/models",
]
PORTS_PER_HOST = 8


@dataclass
class PoolDeployment:
    serve: ServeProcess
    api: httpx.Client
    deployment: str

    def restart(self) -> None:
        """Stop serve and start it again on the same data (containers keep running)."""
        self.serve.stop()
        with _deployment_env(self.deployment):
            serve = start_serve(self.serve.data_dir)
        serve.username, serve.password = self.serve.username, self.serve.password
        self.serve = serve
        serve.wait_for_line("ComfyWeb is running at")
        serve.wait_healthy()
        self.api.base_url = f"{serve.url}api/v1/"

    def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        response = self.api.request(method, path, json=body)
        assert response.status_code == expect, f"{method} {path}: {response.text}"
        return response.json() if response.content else None

    def add_hosts(self) -> list[dict]:
        hosts = []
        for spec in HOSTS:
            first = free_port_run(spec.publish_address, PORTS_PER_HOST)
            body = {
                "name": spec.name,
                "docker_url": spec.docker_url,
                "publish_address": spec.publish_address,
                "port_min": first,
                "port_max": first + PORTS_PER_HOST - 1,
            }
            host = self.call("POST", "docker-hosts", body, expect=201)
            hosts.append(self.call("POST", f"docker-hosts/{host['id']}/check"))
        return hosts

    def add_pool(self, **fields: Any) -> dict:
        body = {
            "name": "sim",
            "image": SIM_IMAGE,
            "command": POOL_COMMAND,
            "min_size": 0,
            "max_size": 4,
            "jobs_per_container": 2,
            "idle_seconds": 2,
        } | fields
        return self.call("POST", "pools", body, expect=201)

    def pool(self, pool_id: int) -> dict:
        return self.call("GET", f"pools/{pool_id}")

    def submit(self, graph: dict, count: int) -> dict:
        return self.call("POST", "tasks", {"graph": graph, "count": count}, expect=201)

    def batch_tasks(self, batch: int) -> list[dict]:
        return self.call("GET", f"tasks?batch={batch}&page_size=200")["items"]

    def server(self, server_id: int) -> dict:
        return self.call("GET", f"servers/{server_id}")

    def wait(self, check: Callable[[], Any], what: str, timeout: float = 240) -> Any:
        """Poll the API until `check()` is truthy (what it shows is the event)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if result := check():
                return result
            time.sleep(0.2)
        raise AssertionError(f"never {what}; serve said:\n" + "\n".join(self.serve.lines[-40:]))


@contextmanager
def pool_deployment(data_dir: Path, deployment: str) -> Iterator[PoolDeployment]:
    """serve on embedded defaults, its containers labelled `deployment`, and a staff API."""
    with _deployment_env(deployment):
        serve = launch(data_dir)
    world = None
    try:
        token = manage(serve, "create_api_token", serve.username).strip()
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=f"{serve.url}api/v1/", headers=headers, timeout=30) as api:
            world = PoolDeployment(serve, api, deployment)
            yield world
    finally:
        (world.serve if world else serve).stop()


@contextmanager
def _deployment_env(deployment: str) -> Iterator[None]:
    previous = os.environ.get("COMFYWEB_DEPLOYMENT")
    os.environ["COMFYWEB_DEPLOYMENT"] = deployment
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("COMFYWEB_DEPLOYMENT", None)
        else:
            os.environ["COMFYWEB_DEPLOYMENT"] = previous


def parse_time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))
