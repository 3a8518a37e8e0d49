"""Fixtures for driving the client and the stream against the ComfyUI simulator."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from comfyweb.backoff import Backoff
from servers.comfyui import ComfyUIClient, EventStream

# Simulated node durations are multiplied by this: fast tests, yet a 500-step
# SlowProgress still runs long enough to be interrupted or queued behind.
TIME_SCALE = 0.05


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[object]:
    # Built here rather than through tests/servers/conftest.py's `comfyui_sim`
    # so these tests choose their own time scale.
    try:
        from servers.simulator.server import SimulatedComfyUI
    except ImportError:
        pytest.skip("the ComfyUI simulator (servers/simulator) is not in this checkout")

    server = SimulatedComfyUI(data_dir=tmp_path / "sim", time_scale=TIME_SCALE)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def client(sim) -> AsyncIterator[ComfyUIClient]:
    async with ComfyUIClient(sim.base_url, retry_base=0) as comfy:
        yield comfy


def quick_backoff() -> Backoff:
    return Backoff(base=0.01, cap=0.05, jitter=0.01, stable_after=30)


@pytest.fixture
async def stream(sim) -> AsyncIterator[EventStream]:
    events = EventStream(sim.base_url, f"tests-{uuid.uuid4().hex[:8]}", backoff=quick_backoff())
    async with events:
        yield events
