"""Fault injection and the simulator's own lifecycle: dropped sockets, refused
connections, error statuses, stalls, a crash mid-prompt, clean stop."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import pathlib
import signal
import subprocess
import sys
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from servers.simulator import SimulatedComfyUI, SimulatorConfig
from servers.simulator.runner import add_arguments, build_servers

from .helpers import GUARD, next_message, slow_prompt, until


async def test_drop_websockets_closes_every_socket_and_clients_can_reconnect(
    comfyui_sim: SimulatedComfyUI,
) -> None:
    async with (
        connect(comfyui_sim.ws_url + "?clientId=a") as a,
        connect(comfyui_sim.ws_url) as b,
    ):
        await next_message(a)
        await next_message(b)
        await comfyui_sim.drop_websockets()
        for socket in (a, b):
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(socket.recv(), GUARD)
    async with connect(comfyui_sim.ws_url + "?clientId=a") as again:
        assert (await next_message(again))["data"]["sid"] == "a"


async def test_reconnect_during_a_run_gets_the_current_node_then_the_rest(
    comfyui_sim: SimulatedComfyUI,
) -> None:
    async with (
        httpx.AsyncClient(base_url=comfyui_sim.base_url) as http,
        connect(comfyui_sim.ws_url + "?clientId=a") as first,
    ):
        await next_message(first)
        body = {"prompt": slow_prompt(500), "client_id": "a"}
        prompt_id = (await http.post("/prompt", json=body)).json()["prompt_id"]
        await until(first, "progress", prompt_id=prompt_id)
        await comfyui_sim.drop_websockets()
        async with connect(comfyui_sim.ws_url + "?clientId=a") as second:
            status = await next_message(second)
            assert status["data"]["sid"] == "a"
            assert await next_message(second) == {"type": "executing", "data": {"node": "2"}}
            await until(second, "progress", prompt_id=prompt_id, node="2")
            await http.post("/interrupt", json={"prompt_id": prompt_id})
            await until(second, "execution_interrupted", prompt_id=prompt_id)


async def test_http_fault_status_answers_every_request_but_not_the_websocket(
    comfyui_sim: SimulatedComfyUI,
) -> None:
    comfyui_sim.faults.http_status = 500
    async with httpx.AsyncClient(base_url=comfyui_sim.base_url) as http:
        assert (await http.get("/queue")).status_code == 500
        async with connect(comfyui_sim.ws_url) as socket:
            assert (await next_message(socket))["type"] == "status"
        comfyui_sim.faults.clear()
        assert (await http.get("/queue")).status_code == 200


async def test_stalled_responses_complete_after_release(comfyui_sim: SimulatedComfyUI) -> None:
    comfyui_sim.faults.stall()
    async with httpx.AsyncClient(base_url=comfyui_sim.base_url) as http:
        request = asyncio.create_task(http.get("/system_stats"))
        await asyncio.wait_for(comfyui_sim.faults.until_held(1), GUARD)
        assert not request.done()
        comfyui_sim.faults.release()
        assert (await asyncio.wait_for(request, GUARD)).status_code == 200


async def test_refused_connections_come_back_on_the_same_port(
    comfyui_sim: SimulatedComfyUI,
) -> None:
    port = comfyui_sim.port
    await comfyui_sim.refuse_connections()
    async with httpx.AsyncClient(base_url=comfyui_sim.base_url) as http:
        with pytest.raises(httpx.ConnectError):
            await http.get("/queue")
    await comfyui_sim.accept_connections()
    assert comfyui_sim.port == port
    async with httpx.AsyncClient(base_url=comfyui_sim.base_url) as http:
        assert (await http.get("/queue")).status_code == 200


async def test_crash_mid_prompt_loses_the_queue_and_restarts_empty(
    comfyui_sim: SimulatedComfyUI,
) -> None:
    async with httpx.AsyncClient(base_url=comfyui_sim.base_url) as http:
        async with connect(comfyui_sim.ws_url + "?clientId=a") as socket:
            await next_message(socket)
            await http.post("/prompt", json={"prompt": slow_prompt(500), "client_id": "a"})
            await http.post("/prompt", json={"prompt": slow_prompt(1), "client_id": "a"})
            await until(socket, "progress")
            await comfyui_sim.crash()
            leftovers = [str(frame) async for frame in socket]
            assert not any("execution_success" in frame for frame in leftovers)
            assert socket.close_code is not None
        with pytest.raises(httpx.ConnectError):
            await http.get("/queue")
        await comfyui_sim.start()
        assert (await http.get("/queue")).json() == {"queue_running": [], "queue_pending": []}
        assert (await http.get("/history")).json() == {}


async def test_stop_leaves_no_tasks_behind(tmp_path) -> None:
    before = asyncio.all_tasks()
    sim = SimulatedComfyUI(data_dir=tmp_path, time_scale=0.1)
    await sim.start()
    async with httpx.AsyncClient(base_url=sim.base_url) as http:
        await http.post("/prompt", json={"prompt": slow_prompt(500)})
    async with connect(sim.ws_url) as socket:
        await next_message(socket)
        await sim.stop()
    assert asyncio.all_tasks() - before == set()
    assert not (tmp_path / "temp").exists() or not any((tmp_path / "temp").iterdir())


async def test_several_simulators_each_have_their_own_port_and_models(
    start_comfyui_sims: Any,
) -> None:
    configs = [
        SimulatorConfig(time_scale=0.1, models={"checkpoints": ["a.safetensors"]}),
        SimulatorConfig(time_scale=0.1, models={"checkpoints": ["b.safetensors"]}),
    ]
    sims = await start_comfyui_sims(2, configs=configs)
    assert len({sim.port for sim in sims}) == 2
    lists = []
    for sim in sims:
        async with httpx.AsyncClient(base_url=sim.base_url) as http:
            lists.append((await http.get("/models/checkpoints")).json())
    assert lists == [["a.safetensors"], ["b.safetensors"]]


REPO = pathlib.Path(__file__).resolve().parents[3]


@pytest.mark.slow
@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "servers.simulator"],
        [sys.executable, str(REPO / "manage.py"), "comfyui_sim"],
    ],
    ids=["python -m servers.simulator", "manage.py comfyui_sim"],
)
def test_command_starts_servers_and_stops_on_sigterm(command: list[str]) -> None:
    process = subprocess.Popen(
        [*command, "--count", "3", "--base-port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline().strip() for _ in range(4)]
        assert lines[3] == "ready"
        urls = [line.split()[-1] for line in lines[:3]]
        for url in urls:
            assert url.startswith("http://127.0.0.1:")
            assert httpx.get(url + "/system_stats", timeout=GUARD).status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=GUARD) == 0
        assert process.stdout.read().strip() == "stopped"
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait(timeout=GUARD)


def test_runner_builds_a_heterogeneous_fleet_from_options(tmp_path) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    options = parser.parse_args(
        [
            "--count",
            "3",
            "--base-port",
            "9000",
            "--speed",
            "1,2",
            "--models",
            "a.safetensors,b.safetensors;c.safetensors",
            "--node-seconds",
            "KSampler=0.5",
        ]
    )
    servers = build_servers(options, tmp_path)
    assert [s.port for s in servers] == [9000, 9001, 9002]
    assert [s.config.time_scale for s in servers] == [1.0, 0.5, 1.0]
    assert [s.config.models["checkpoints"] for s in servers] == [
        ["a.safetensors", "b.safetensors"],
        ["c.safetensors"],
        ["a.safetensors", "b.safetensors"],
    ]
    assert servers[0].config.node_seconds["KSampler"] == 0.5


@pytest.mark.parametrize("bad", [["--speed", "0"], ["--count", "0"], ["--node-seconds", "X=y"]])
def test_runner_rejects_bad_options(tmp_path, bad: list[str]) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    with pytest.raises(ValueError, match=r"--"):
        build_servers(parser.parse_args(bad), tmp_path)
