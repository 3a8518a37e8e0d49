"""Read-only server information: /system_stats, /object_info, /models, ..."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from aiohttp import web

from servers.simulator import catalogue, frames
from servers.simulator.config import MODEL_FOLDERS
from servers.simulator.keys import SIM_KEY

if TYPE_CHECKING:
    from servers.simulator.server import SimulatedComfyUI

routes = web.RouteTableDef()

COMFYUI_VERSION = "0.3.64"
_INDEX = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>ComfyUI</title></head>
<body><p>ComfyUI simulator (ComfyWeb).
The API is at /prompt, /queue, /history and /ws.</p></body></html>
"""


def _sim(request: web.Request) -> SimulatedComfyUI:
    return request.app[SIM_KEY]


@routes.get("/")
async def index(request: web.Request) -> web.Response:
    return web.Response(text=_INDEX, content_type="text/html")


@routes.get("/system_stats")
async def system_stats(request: web.Request) -> web.Response:
    sim = _sim(request)
    ram_total, ram_free = _memory()
    device = _device(sim.config.vram, ram_total, ram_free)
    return web.json_response(
        {
            "system": {
                "os": os.name,
                "ram_total": ram_total,
                "ram_free": ram_free,
                "comfyui_version": COMFYUI_VERSION,
                "required_frontend_version": "1.27.10",
                "installed_templates_version": "0.1.95",
                "required_templates_version": "0.1.95",
                "python_version": sys.version,
                "pytorch_version": "2.13.0+cpu",
                "embedded_python": False,
                "argv": ["main.py", "--cpu", "--listen", sim.host, "--port", str(sim.port)],
            },
            "devices": [device],
        }
    )


def _device(vram: int | None, ram_total: int, ram_free: int) -> dict[str, object]:
    if vram is None:  # the recorded server ran on its CPU
        name, kind, index, total, free = "cpu", "cpu", None, ram_total, ram_free
    else:
        name, kind, index, total, free = "cuda:0 Simulated GPU", "cuda", 0, vram, vram
    return {
        "name": name,
        "type": kind,
        "index": index,
        "vram_total": total,
        "vram_free": free,
        "torch_vram_total": total,
        "torch_vram_free": free,
    }


def _memory() -> tuple[int, int]:
    try:
        pages = os.sysconf("SC_PHYS_PAGES")
        free = os.sysconf("SC_AVPHYS_PAGES")
        size = os.sysconf("SC_PAGE_SIZE")
        return pages * size, free * size
    except (ValueError, OSError, AttributeError):
        return 16 * 2**30, 8 * 2**30


@routes.get("/features")
async def features(request: web.Request) -> web.Response:
    return web.json_response(dict(frames.SERVER_FEATURES))


@routes.get("/object_info")
async def object_info(request: web.Request) -> web.Response:
    sim = _sim(request)
    return web.json_response(catalogue.object_info(sim.config, sim.dirs.input))


@routes.get("/object_info/{node_class}")
async def object_info_one(request: web.Request) -> web.Response:
    sim = _sim(request)
    name = request.match_info["node_class"]
    if not catalogue.has_class(name):
        return web.json_response({})
    return web.json_response({name: catalogue.node_info(name, sim.config, sim.dirs.input)})


@routes.get("/embeddings")
async def embeddings(request: web.Request) -> web.Response:
    sim = _sim(request)
    return web.json_response([os.path.splitext(n)[0] for n in sim.config.model_list("embeddings")])


@routes.get("/models")
async def model_folders(request: web.Request) -> web.Response:
    return web.json_response(list(MODEL_FOLDERS))


@routes.get("/models/{folder}")
async def models(request: web.Request) -> web.Response:
    folder = request.match_info["folder"]
    if folder not in MODEL_FOLDERS:
        return web.Response(status=404)
    return web.json_response(_sim(request).config.model_list(folder))


@routes.get("/extensions")
async def extensions(request: web.Request) -> web.Response:
    return web.json_response([])
