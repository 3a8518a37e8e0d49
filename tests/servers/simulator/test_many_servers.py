"""One simulator process serves many servers (benchmarks and scale tests run hundreds):
each on its own port is a server of its own."""

from __future__ import annotations

import argparse

import httpx

from servers.comfyui import ComfyUIClient
from servers.simulator.runner import add_arguments, build_servers
from tests.servers.simulator.helpers import slow_prompt

GB = 2**30


def _servers(tmp_path, *argv: str):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return build_servers(parser.parse_args(list(argv)), tmp_path)


async def test_each_port_of_one_process_is_a_server_of_its_own(tmp_path):
    servers = _servers(tmp_path, "--count", "3", "--base-port", "0", "--time-scale", "0.1")
    try:
        for server in servers:
            await server.start()
        assert len({server.port for server in servers}) == 3
        first, second, third = (ComfyUIClient(server.base_url) for server in servers)
        async with first, second, third:
            receipt = await first.submit(slow_prompt(500, 0.1), client_id="someone")
            queues = [await client.get_queue() for client in (first, second, third)]
            assert [item.prompt_id for item in (*queues[0].running, *queues[0].pending)] == [
                receipt.prompt_id
            ]
            assert not (*queues[1].running, *queues[1].pending, *queues[2].running)
            assert not await second.get_histories()
        assert len({server.dirs.root for server in servers}) == 3
    finally:
        for server in servers:
            await server.stop()


async def test_a_simulated_gpu_reports_the_same_free_vram_on_every_check(tmp_path):
    (server,) = _servers(tmp_path, "--base-port", "0", "--vram", "24")
    try:
        await server.start()
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            devices = [(await client.get("/system_stats")).json()["devices"] for _ in range(3)]
        assert devices[0] == devices[1] == devices[2]
        (device,) = devices[0]
        assert (device["type"], device["vram_total"], device["vram_free"]) == (
            "cuda",
            24 * GB,
            24 * GB,
        )
    finally:
        await server.stop()
