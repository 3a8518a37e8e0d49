"""The aiohttp application key under which handlers find their simulator."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from servers.simulator.server import SimulatedComfyUI

SIM_KEY: web.AppKey[SimulatedComfyUI] = web.AppKey("sim")
