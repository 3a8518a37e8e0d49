"""Containers made straight through `servers.containers.engines` on the real test
engines, and waiting for them (tests/docker_engines.py)."""

from __future__ import annotations

import time
from typing import Any

import httpx

from servers.containers.engines import create_container, inspect, logs_tail
from servers.containers.models import Container, DockerHost
from tests.docker_engines import Engine
from tests.factories import make_docker_host

# Bounds on waiting for a container (a start takes about a second): not timings asserted.
START_BOUND = 60.0
EXIT_BOUND = 30.0
SLEEPER = ["python", "-c", "import time; time.sleep(600)"]


def engine_host(engine: Engine, **fields: Any) -> DockerHost:
    """A host row for `engine` whose one port is free at its publish address now."""
    port = engine.free_port()
    name = fields.pop("name", engine.spec.name)
    defaults: dict[str, Any] = {
        "docker_url": engine.spec.docker_url,
        "publish_address": engine.spec.publish_address,
        "port_min": port,
        "port_max": port,
    }
    return make_docker_host(name, **defaults | fields)


def started(container: Container) -> Container:
    container.docker_id = create_container(container)
    container.save(update_fields=["docker_id"])
    return container


def wait_for(condition, what: str, bound: float):
    """Poll until `condition()` is truthy; a bound on waiting, not a timed assertion."""
    deadline = time.monotonic() + bound
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {bound:.0f} s")
        time.sleep(0.1)
    return result


def comfyui_get(container: Container, path: str) -> Any:
    """The JSON of GET `path` on the container's ComfyUI, or None while it does not
    answer (fails if the container exited)."""
    url = f"http://{container.host.publish_address}:{container.port}{path}"
    try:
        return httpx.get(url, timeout=2.0).raise_for_status().json()
    except httpx.HTTPError:
        seen = inspect(container)
        if seen is None or not seen.running:
            raise AssertionError(f"the container is gone: {logs_tail(container)}") from None
        return None


def system_stats(container: Container) -> dict | None:
    """The simulator's /system_stats, or None while it does not answer."""
    return comfyui_get(container, "/system_stats")
