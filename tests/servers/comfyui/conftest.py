"""Fixtures for driving the client and the stream against the ComfyUI simulator
(`comfyui_sim` comes from tests/servers/conftest.py)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from servers.comfyui import ComfyUIClient, EventStream

from .fakes import quick_backoff


@pytest.fixture
async def client(comfyui_sim) -> AsyncIterator[ComfyUIClient]:
    async with ComfyUIClient(comfyui_sim.base_url, retry_base=0) as comfy:
        yield comfy


@pytest.fixture
async def stream(comfyui_sim) -> AsyncIterator[EventStream]:
    events = EventStream(
        comfyui_sim.base_url, f"tests-{uuid.uuid4().hex[:8]}", backoff=quick_backoff()
    )
    async with events:
        yield events
