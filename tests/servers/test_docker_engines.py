"""The simulated ComfyUI image on the two real Docker engines (tests/docker_engines.py).

What container pools will rely on: the image runs on either host, its published
port answers ComfyUI's start-up checks (`/system_stats`, `/object_info`) at that
host's own address, a removed container is gone from its engine, and the two
engines are told apart by their engine ID.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sys
import time

import docker.errors
import pytest
from docker.models.containers import Container

from servers.comfyui import ComfyUIClient, ComfyUIError, SystemStats, Timeouts
from servers.simulator import SimulatorConfig, catalogue
from servers.simulator.routes_info import COMFYUI_VERSION
from tests.docker_engines import (
    DEPLOYMENT_LABEL,
    HOSTS,
    SIM_IMAGE,
    DockerEngines,
    remove_labelled,
)
from tests.monitoring import wait_until

# Short per-request bounds: polling retries, the deadline below bounds the wait.
PROBE = Timeouts(connect=1.0, read=5.0, write=5.0, pool=1.0)
# Far above the ~1 s a start takes: a bound on waiting, not a timing assertion.
START_BOUND = 60.0


async def start_up_answers(
    client: ComfyUIClient, container: Container
) -> tuple[SystemStats, dict] | None:
    """Both start-up checks' answers, or None while ComfyUI does not answer yet."""
    try:
        return await client.system_stats(), await client.object_info()
    except ComfyUIError:
        await asyncio.to_thread(container.reload)
        if container.status == "exited":
            logs = await asyncio.to_thread(container.logs, tail=20)
            raise AssertionError(f"the container exited: {logs.decode(errors='replace')}") from None
        return None


@pytest.mark.parametrize("host", range(len(HOSTS)), ids=[spec.name for spec in HOSTS])
async def test_simulator_container_answers_start_up_checks_on_its_hosts_address_then_is_removed(
    docker_engines: DockerEngines, host: int, tmp_path
) -> None:
    engine = docker_engines.engines[host]
    port = engine.free_port()
    url = f"http://{engine.spec.publish_address}:{port}"
    started = time.monotonic()
    container = await asyncio.to_thread(docker_engines.run_simulator, engine, port)

    async with ComfyUIClient(url, timeouts=PROBE, get_retries=0) as client:
        answers = functools.partial(start_up_answers, client, container)
        stats, object_info = await wait_until(answers, within=START_BOUND, what=f"ComfyUI on {url}")
    print(f"{engine.spec.name}: {url} answered {time.monotonic() - started:.2f} s after run")

    assert stats.comfyui_version == COMFYUI_VERSION
    assert stats.python_version == sys.version  # the project's own interpreter
    assert [device.type for device in stats.devices] == ["cpu"]
    expected = catalogue.object_info(SimulatorConfig(), tmp_path)  # an empty input folder too
    assert object_info == json.loads(json.dumps(expected))

    await asyncio.to_thread(container.remove, force=True)
    with pytest.raises(docker.errors.NotFound):
        await asyncio.to_thread(engine.client.containers.get, container.id)


def test_the_two_engines_have_different_engine_ids(docker_engines: DockerEngines) -> None:
    ids = [engine.client.info()["ID"] for engine in docker_engines.engines]
    assert all(ids)
    assert len(set(ids)) == len(ids)


def test_removing_a_deployments_containers_leaves_other_deployments_alone(
    docker_engines: DockerEngines,
) -> None:
    engine = docker_engines.engines[0]
    idle = {"command": ["python", "-c", "import time; time.sleep(600)"], "init": True}
    ours = engine.client.containers.run(
        SIM_IMAGE, detach=True, labels=docker_engines.labels, **idle
    )
    other_deployment = f"{docker_engines.deployment}-other"
    theirs = engine.client.containers.run(
        SIM_IMAGE,
        detach=True,
        labels={DEPLOYMENT_LABEL: other_deployment},
        **idle,
    )
    try:
        assert remove_labelled(engine.client, docker_engines.deployment) == [ours.id]
        with pytest.raises(docker.errors.NotFound):
            engine.client.containers.get(ours.id)
        theirs.reload()
        assert theirs.status == "running"
    finally:
        remove_labelled(engine.client, other_deployment)
