"""A ComfyUI-compatible server (HTTP + WebSocket) for tests, demos and benchmarks.

It reproduces the protocol recorded from ComfyUI 0.3.64 (see
../shared/comfyui/PROTOCOL.md): the same endpoints (also under /api), status
codes, empty bodies, JSON shapes, WebSocket routing and message order,
validation errors, output files and caching. Modules, one job each:

    server.py         SimulatedComfyUI: start/stop, fault injection
    app.py            aiohttp app, routes under / and /api, the Origin check
    keys.py           the app key handlers find the simulator under
    faults.py         HTTP error status, stalls, delays, out of memory until /free
    config.py         SimulatorConfig (models, speed, durations, failure rate), data dirs
    routes_prompt.py  /prompt /queue /interrupt /history /free
    routes_files.py   /view /upload/image
    routes_info.py    /system_stats /object_info /models /features ...
    hub.py            WebSocket table, routing, the one publisher queue
    frames.py         binary frame encoding (preview types 1 and 4, text 3)
    prompt_queue.py   the heap queue and the `number` counter
    history.py        completed prompts
    validation.py     validate_prompt and its 400 bodies
    catalogue.py      node catalogue (object_info.json) and model lists
    executor.py       the worker: message sequences, errors, interrupts
    staging.py        which node runs next
    cache.py          "last prompt only" output cache
    progress.py       progress_state / progress / previews
    nodes.py          node implementations; images.py: Pillow work and files
    runner.py         run N servers until a signal (__main__.py, comfyui_sim command)

Run N servers in a child process (what `manage.py serve --demo N` uses)::

    python -m servers.simulator --count 3 --base-port 8188 [--host 127.0.0.1]
        [--time-scale 1.0] [--speed 1,2] [--data-dir DIR] [--failure-rate 0.0]
        [--models a.safetensors,b.safetensors;c.safetensors] [--node-seconds KSampler=0.05]
        [--vram GB]

It prints one line per server, ``comfyui-sim <n> http://127.0.0.1:<port>``,
then ``ready``, and runs until SIGINT/SIGTERM. `--base-port 0` picks free ports;
`--ports 9000-9099,9200` names each server's port instead (a restarted process of a
test deployment takes back the ports it had).
One process serves any number of servers, each on its own port with its own
queue, history, sockets and data directory (500 start in about a second).
`python manage.py comfyui_sim` takes the same options.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from servers.simulator.config import SimulatorConfig
    from servers.simulator.server import SimulatedComfyUI

__all__ = ["SimulatedComfyUI", "SimulatorConfig"]


def __getattr__(name: str) -> Any:
    # Imported when asked for: the pages' outage control (`control.py`) is part of
    # this package, and the web, worker and monitor processes need no aiohttp.
    if name == "SimulatedComfyUI":
        from servers.simulator.server import SimulatedComfyUI

        return SimulatedComfyUI
    if name == "SimulatorConfig":
        from servers.simulator.config import SimulatorConfig

        return SimulatorConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
