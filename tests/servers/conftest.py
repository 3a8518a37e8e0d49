"""Simulated ComfyUI servers for the servers/ tests (real sockets, 127.0.0.1 only)."""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from servers.simulator import SimulatedComfyUI, SimulatorConfig

# Tests run simulated work ten times faster than the recorded timings.
TEST_TIME_SCALE = 0.1


@pytest.fixture
async def comfyui_sim(tmp_path: pathlib.Path) -> AsyncIterator[SimulatedComfyUI]:
    """A started simulator on 127.0.0.1 with a fresh data dir; stopped afterwards."""
    sim = SimulatedComfyUI(
        "127.0.0.1", 0, data_dir=tmp_path / "comfyui", time_scale=TEST_TIME_SCALE
    )
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


@pytest.fixture
async def start_comfyui_sims(
    tmp_path: pathlib.Path,
) -> AsyncIterator[Callable[..., Any]]:
    """`await start_comfyui_sims(3, config=...)` → three started simulators.

    Each gets its own data dir; every one started is stopped at the end.
    `configs=[...]` gives each server its own SimulatorConfig (heterogeneous fleet).
    """
    started: list[SimulatedComfyUI] = []

    async def start(
        count: int = 1,
        *,
        configs: list[SimulatorConfig] | None = None,
        time_scale: float = TEST_TIME_SCALE,
    ) -> list[SimulatedComfyUI]:
        sims = []
        for index in range(count):
            config = configs[index] if configs else SimulatorConfig(time_scale=time_scale)
            sim = SimulatedComfyUI(
                "127.0.0.1", 0, data_dir=tmp_path / f"comfyui-{len(started)}", config=config
            )
            await sim.start()
            started.append(sim)
            sims.append(sim)
        return sims

    try:
        yield start
    finally:
        for sim in started:
            with contextlib.suppress(Exception):
                await sim.stop()
