"""Queue-side HTTP endpoints: /prompt, /queue, /interrupt, /history, /free."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import web

from servers.simulator.history import SENSITIVE_KEYS
from servers.simulator.keys import SIM_KEY
from servers.simulator.prompt_queue import QueueItem
from servers.simulator.validation import validate_prompt

if TYPE_CHECKING:
    from servers.simulator.server import SimulatedComfyUI

routes = web.RouteTableDef()


def _sim(request: web.Request) -> SimulatedComfyUI:
    return request.app[SIM_KEY]


def queue_info(sim: SimulatedComfyUI) -> dict[str, Any]:
    return {"exec_info": {"queue_remaining": sim.queue.remaining()}}


@routes.get("/prompt")
async def get_prompt(request: web.Request) -> web.Response:
    return web.json_response(queue_info(_sim(request)))


@routes.post("/prompt")
async def post_prompt(request: web.Request) -> web.Response:
    sim = _sim(request)
    # Not JSON (or not an object) raises, and aiohttp answers the same plain
    # "500 Internal Server Error" ComfyUI does.
    body = await request.json()
    number = sim.queue.next_number(body)
    if "prompt" not in body:
        error = {
            "type": "no_prompt",
            "message": "No prompt provided",
            "details": "No prompt provided",
            "extra_info": {},
        }
        return web.json_response({"error": error, "node_errors": {}}, status=400)
    prompt = body["prompt"]
    prompt_id = str(body.get("prompt_id", uuid.uuid4()))
    targets = body.get("partial_execution_targets")
    result = validate_prompt(prompt, sim.config, sim.dirs.input, targets)
    extra_data = body.get("extra_data", {})
    if "client_id" in body:
        extra_data["client_id"] = body["client_id"]
    if not result.ok:
        return web.json_response(
            {"error": result.error, "node_errors": result.node_errors}, status=400
        )
    for key in SENSITIVE_KEYS:
        extra_data.pop(key, None)
    sim.queue.put(QueueItem(number, prompt_id, prompt, extra_data, result.outputs))
    return web.json_response(
        {"prompt_id": prompt_id, "number": number, "node_errors": result.node_errors}
    )


@routes.get("/queue")
async def get_queue(request: web.Request) -> web.Response:
    sim = _sim(request)
    return web.json_response(
        {
            "queue_running": [item.as_list() for item in sim.queue.running()],
            "queue_pending": [item.as_list() for item in sim.queue.pending()],
        }
    )


@routes.post("/queue")
async def post_queue(request: web.Request) -> web.Response:
    sim = _sim(request)
    body = await request.json()
    if body.get("clear"):
        sim.queue.wipe()
    for prompt_id in body.get("delete", []):
        sim.queue.delete(prompt_id)
    return web.Response(status=200)


@routes.post("/interrupt")
async def post_interrupt(request: web.Request) -> web.Response:
    sim = _sim(request)
    try:
        body = json.loads(await request.text())
    except json.JSONDecodeError:
        body = {}
    prompt_id = body.get("prompt_id") if isinstance(body, dict) else None
    if prompt_id and prompt_id != sim.executor.running_prompt_id:
        return web.Response(status=200)
    sim.executor.interrupt()
    return web.Response(status=200)


@routes.get("/history")
async def get_history(request: web.Request) -> web.Response:
    query = request.rel_url.query
    # int() of a bad value raises: a 500, as on the real server.
    max_items = int(query["max_items"]) if "max_items" in query else None
    offset = int(query["offset"]) if "offset" in query else -1
    return web.json_response(_sim(request).history.listing(max_items, offset))


@routes.get("/history/{prompt_id}")
async def get_history_item(request: web.Request) -> web.Response:
    return web.json_response(_sim(request).history.get(request.match_info["prompt_id"]))


@routes.post("/history")
async def post_history(request: web.Request) -> web.Response:
    history = _sim(request).history
    body = await request.json()
    if body.get("clear"):
        history.clear()
    for prompt_id in body.get("delete", []):
        history.delete(prompt_id)
    return web.Response(status=200)


@routes.post("/free")
async def post_free(request: web.Request) -> web.Response:
    queue = _sim(request).queue
    body = await request.json()
    if body.get("unload_models"):
        queue.set_flag("unload_models", True)
    if body.get("free_memory"):
        queue.set_flag("free_memory", True)
    return web.Response(status=200)
