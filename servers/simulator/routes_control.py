"""Demo controls that real ComfyUI does not have: ComfyWeb's own extension.

`POST /comfyweb-sim/outage {"seconds": N}` makes the simulator go down as a
crashed server would (sockets closed, queue lost, connections refused) and
come back after N seconds, so a person can watch failover and re-admission in
the demo. Kept off the `/api` prefix and refused to anything but loopback.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json

from aiohttp import web

from servers.simulator.control import OUTAGE_PATH
from servers.simulator.keys import SIM_KEY

MAX_OUTAGE_SECONDS = 600

routes = web.RouteTableDef()


def _from_loopback(request: web.Request) -> bool:
    try:
        return ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        return False


@routes.post(OUTAGE_PATH)
async def outage(request: web.Request) -> web.Response:
    if not _from_loopback(request):
        return web.Response(status=403)
    try:
        seconds = float((await request.json())["seconds"])
    except (ValueError, KeyError, TypeError, json.JSONDecodeError):
        return web.json_response({"error": 'expected {"seconds": number}'}, status=400)
    if not 0 < seconds <= MAX_OUTAGE_SECONDS:
        return web.json_response(
            {"error": f"seconds must be in (0, {MAX_OUTAGE_SECONDS}]"}, status=400
        )
    sim = request.app[SIM_KEY]
    # Answer first: going down tears down this very connection.
    asyncio.get_running_loop().call_later(0.05, sim.schedule_outage, seconds)
    return web.json_response({"down_for": seconds}, status=202)
