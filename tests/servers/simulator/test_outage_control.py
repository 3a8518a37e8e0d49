from __future__ import annotations

import asyncio

import httpx
import pytest

from servers.simulator.control import ControlError, simulate_outage


async def _answers(url: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=1) as client:
            return (await client.get(f"{url}/system_stats")).status_code == 200
    except httpx.TransportError:
        return False


async def _wait_for(url: str, *, up: bool, within: float = 10) -> None:
    async with asyncio.timeout(within):
        while await _answers(url) is not up:  # noqa: ASYNC110 - polls a server, no event to await
            await asyncio.sleep(0.05)


async def test_outage_takes_the_server_down_then_brings_it_back(comfyui_sim):
    await simulate_outage(comfyui_sim.base_url, 0.5)
    await _wait_for(comfyui_sim.base_url, up=False)
    await _wait_for(comfyui_sim.base_url, up=True)


async def test_outage_with_a_bad_duration_is_refused(comfyui_sim):
    with pytest.raises(ControlError, match="HTTP 400"):
        await simulate_outage(comfyui_sim.base_url, 0)
    assert await _answers(comfyui_sim.base_url)


async def test_outage_of_an_unreachable_server_is_a_control_error():
    with pytest.raises(ControlError, match="ConnectError"):
        await simulate_outage("http://127.0.0.1:9", 5)


async def test_stopping_during_an_outage_keeps_it_stopped(comfyui_sim):
    await simulate_outage(comfyui_sim.base_url, 0.3)
    await _wait_for(comfyui_sim.base_url, up=False)
    await comfyui_sim.stop()
    await asyncio.sleep(0.6)  # longer than the outage: it must not come back
    assert not await _answers(comfyui_sim.base_url)
