"""The two real Docker engines that container tests run on.

`../shared/docker/docker-test-hosts-up.sh` starts them and `make sim-image` puts
the simulated ComfyUI image into both; `.ci/run` does both before `make test`.
They look like two machines: host 1 publishes ports on 127.0.0.1, host 2 on
127.0.0.2. Nothing here pulls an image (there is no registry, and a pull would
try a non-loopback DNS lookup).

Every container a test makes carries the label `comfyweb.deployment=<the
test's deployment id>`; the `docker_engines` fixture removes every container
with that label when the test ends, whatever the test did.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import docker
import docker.errors
import pytest
from docker.models.containers import Container

SIM_IMAGE = "comfyweb/comfyui-sim:test"
COMFYUI_PORT = 8188
DEPLOYMENT_LABEL = "comfyweb.deployment"
# Deployment ids of tests start with this, so leftovers of an aborted run (pytest
# killed before teardown) can be told apart; docker-test-hosts-down.sh removes them.
TEST_DEPLOYMENT_PREFIX = "test-"
UP_HINT = "bash ../shared/docker/docker-test-hosts-up.sh && make sim-image"


@dataclass(frozen=True)
class DockerHostSpec:
    name: str
    docker_url: str
    publish_address: str  # where its published ports bind and servers are reached


HOSTS = (
    DockerHostSpec("host-1", "unix:///var/run/docker.sock", "127.0.0.1"),
    DockerHostSpec("host-2", "unix:///var/run/docker-d2.sock", "127.0.0.2"),
)


@dataclass
class Engine:
    spec: DockerHostSpec
    client: docker.DockerClient

    def free_port(self) -> int:
        """A port nothing listens on at this host's publish address right now."""
        with socket.socket() as sock:
            sock.bind((self.spec.publish_address, 0))
            return sock.getsockname()[1]

    def free_port_run(self, count: int) -> int:
        """The first of `count` consecutive ports free at this host's address right now."""
        return free_port_run(self.spec.publish_address, count)


def free_port_run(address: str, count: int) -> int:
    """The first of `count` consecutive ports free on `address`, below the kernel's
    ephemeral range (32768 and up), where outgoing connections would take them."""
    rng = random.Random()
    for _ in range(200):
        first = rng.randrange(20000, 32000 - count)
        if all(_bindable(address, port) for port in range(first, first + count)):
            return first
    raise AssertionError(f"no {count} consecutive free ports on {address}")


def _bindable(address: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


@dataclass
class DockerEngines:
    """Both engines, and the deployment id (label value) of the current test."""

    engines: list[Engine]
    deployment: str = field(default_factory=lambda: TEST_DEPLOYMENT_PREFIX + uuid.uuid4().hex[:12])

    @property
    def labels(self) -> dict[str, str]:
        return {DEPLOYMENT_LABEL: self.deployment}

    def run_simulator(self, engine: Engine, port: int, **kwargs) -> Container:
        """Start the simulator image on `engine`, ComfyUI's port published on `port`."""
        return engine.client.containers.run(
            SIM_IMAGE,
            detach=True,
            labels=self.labels,
            ports={f"{COMFYUI_PORT}/tcp": (engine.spec.publish_address, port)},
            **kwargs,
        )


def connect(spec: DockerHostSpec) -> docker.DockerClient:
    """A client of the engine at `spec`; raises DockerException when none answers there."""
    return docker.DockerClient(base_url=spec.docker_url, timeout=30)


def _where(spec: DockerHostSpec) -> str:
    return f"{spec.name} ({spec.docker_url})"


def _no_engine(spec: DockerHostSpec, exc: Exception) -> str:
    return f"no Docker engine answers at {_where(spec)}: {exc}; start them: {UP_HINT}"


def unavailable_reason(engines: list[Engine]) -> str | None:
    """Why these engines cannot run the tests, or None when they can."""
    for engine in engines:
        try:
            engine.client.ping()
        except (docker.errors.DockerException, OSError) as exc:
            return _no_engine(engine.spec, exc)
        try:
            engine.client.images.get(SIM_IMAGE)
        except docker.errors.ImageNotFound:
            return f"{_where(engine.spec)} has no {SIM_IMAGE} image; build it: make sim-image"
    return None


def remove_labelled(client: docker.DockerClient, deployment: str) -> list[str]:
    """Remove (forced, volumes too) every container labelled with `deployment`; their ids."""
    selector = {"label": f"{DEPLOYMENT_LABEL}={deployment}"}
    removed = []
    for container in client.containers.list(all=True, filters=selector):
        with contextlib.suppress(docker.errors.NotFound):  # gone on its own meanwhile
            container.remove(force=True, v=True)
        removed.append(container.id)
    return removed


@contextlib.contextmanager
def docker_engines_for_test() -> Iterator[DockerEngines]:
    """Both engines for one test; fails under CI and skips elsewhere when they are missing."""
    engines: list[Engine] = []
    try:
        reason = None
        for spec in HOSTS:
            try:
                engines.append(Engine(spec, connect(spec)))
            except (docker.errors.DockerException, OSError) as exc:
                reason = _no_engine(spec, exc)
                break
        if reason := reason or unavailable_reason(engines):
            if os.environ.get("CI"):
                pytest.fail(f"CI needs the Docker test engines: {reason}")
            pytest.skip(reason)
        world = DockerEngines(engines)
        try:
            yield world
        finally:
            for engine in engines:
                remove_labelled(engine.client, world.deployment)
    finally:
        for engine in engines:
            engine.client.close()
