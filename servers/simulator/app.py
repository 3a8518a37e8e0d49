"""The aiohttp application: routes (each also under /api), the Origin check,
fault injection."""

from __future__ import annotations

import ipaddress
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from servers.simulator import routes_control, routes_files, routes_info, routes_prompt
from servers.simulator.keys import SIM_KEY

if TYPE_CHECKING:
    from servers.simulator.server import SimulatedComfyUI

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def origin_rejected(host: str | None, origin: str | None) -> bool:
    """ComfyUI's origin_only_middleware: a loopback Host must match the Origin.

    This stops a random web page from queueing prompts on 127.0.0.1 through
    the visitor's browser. Without an Origin header anything goes.
    """
    if not host or not origin:
        return False
    parsed_origin = urllib.parse.urlparse(origin)
    origin_domain = parsed_origin.netloc.lower()
    host_domain = host.lower()
    parsed_host = urllib.parse.urlsplit("//" + host_domain)
    if parsed_origin.port is None:
        # An Origin without a port is compared with the bare host name.
        host_domain = parsed_host.hostname or ""
    if not _is_loopback(parsed_host.hostname) or not host_domain or not origin_domain:
        return False
    return host_domain != origin_domain


@web.middleware
async def origin_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if origin_rejected(request.headers.get("Host"), request.headers.get("Origin")):
        return web.Response(status=403)
    if request.method == "OPTIONS":
        return web.Response()
    return await handler(request)


@web.middleware
async def fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    sim = request.app[SIM_KEY]
    if request.path in ("/ws", "/api/ws"):
        return await handler(request)
    await sim.faults.before_response()
    if sim.faults.fails(request.path):
        return web.Response(status=sim.faults.http_status)
    return await handler(request)


def create_app(sim: SimulatedComfyUI) -> web.Application:
    app = web.Application(
        middlewares=[origin_middleware, fault_middleware], client_max_size=104857600
    )
    app[SIM_KEY] = sim
    tables = [routes_prompt.routes, routes_files.routes, routes_info.routes]
    for prefix in ("", "/api"):
        for table in tables:
            for route in table:
                assert isinstance(route, web.RouteDef)
                path = prefix + route.path if route.path != "/" or not prefix else prefix + "/"
                app.router.add_route(route.method, path, route.handler)
        app.router.add_get(prefix + "/ws", sim.hub.handle)
    app.router.add_routes(routes_control.routes)
    return app
