"""One simulator process serves many servers (benchmarks and scale tests run hundreds):
each on its own port is a server of its own."""

from __future__ import annotations

import argparse

import httpx
import pytest
from websockets.asyncio.client import connect

from servers.comfyui import ComfyUIClient
from servers.simulator.runner import add_arguments, build_servers
from tests.serve_process import free_ports
from tests.servers.simulator.helpers import run_to_completion, slow_prompt

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


async def test_servers_on_the_ports_named_keep_their_own_queue_and_history(tmp_path):
    ports = free_ports(2)
    first_server, second_server = _servers(
        tmp_path, "--ports", ",".join(map(str, ports)), "--time-scale", "0.1"
    )
    try:
        await first_server.start()
        await second_server.start()
        assert [first_server.port, second_server.port] == ports
        async with (
            ComfyUIClient(first_server.base_url) as first,
            ComfyUIClient(second_server.base_url) as second,
        ):
            async with connect(first_server.ws_url + "?clientId=a") as socket:
                done = await first.submit(slow_prompt(1, 0.01, nonce=1), client_id="a")
                waiting = await second.submit(slow_prompt(500, 0.1, nonce=2), client_id="b")
                await run_to_completion(socket, done.prompt_id)
            assert list(await first.get_histories()) == [done.prompt_id]
            assert not await second.get_histories()
            queue = await second.get_queue()
            assert [item.prompt_id for item in queue.running] == [waiting.prompt_id]
            assert not (await first.get_queue()).running
    finally:
        await first_server.stop()
        await second_server.stop()


@pytest.mark.parametrize(
    ("text", "ports"),
    [("9000-9002,9010", [9000, 9001, 9002, 9010]), ("9005", [9005])],
)
def test_ports_are_read_as_a_list_of_ports_and_ranges(tmp_path, text, ports):
    assert [server.port for server in _servers(tmp_path, "--ports", text)] == ports


@pytest.mark.parametrize("text", ["9000-8999", "9000,9000", "x", "70000"])
def test_a_bad_port_list_is_refused(text):
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_arguments(parser)
    with pytest.raises(argparse.ArgumentError):
        parser.parse_args(["--ports", text])


def test_a_count_that_contradicts_the_ports_is_refused(tmp_path):
    with pytest.raises(ValueError, match="--count 3 but --ports names 2"):
        _servers(tmp_path, "--ports", "9000,9001", "--count", "3")


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
