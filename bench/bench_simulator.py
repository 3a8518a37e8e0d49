"""Benchmark of the ComfyUI simulator: POST /prompt latency and WS events/s.

Starts one simulator in-process on 127.0.0.1 (loopback only); the client
shares its event loop, so the figures include the client's own work too (a
server thread with its own loop measured worse: the two then fight over the
GIL). Then it
1. posts a bounded number of trivial prompts one after another and prints the
   POST /prompt round-trip percentiles (the recorded ComfyUI took a median of
   1.5 ms on an idle queue, PROTOCOL.md §8);
2. runs a bounded batch of fast prompts (SlowProgress with zero-length steps)
   for one WebSocket client and prints the events it received per second.

Rerun: .venv/bin/python bench/bench_simulator.py [--requests N] [--prompts N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import statistics
import sys
import tempfile
import time
from typing import Any

import httpx
from websockets.asyncio.client import connect

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from bench.common import percentile, trivial_graph
from servers.simulator import SimulatedComfyUI

GUARD_SECONDS = 120.0


def _chatty(nonce: int, steps: int) -> dict[str, Any]:
    prompt = trivial_graph(0)
    prompt["2"] = {
        "class_type": "SlowProgress",
        "inputs": {"image": ["1", 0], "steps": steps, "seconds_per_step": 0.0, "nonce": nonce},
    }
    prompt["3"] = {"class_type": "SaveImageWebsocket", "inputs": {"images": ["2", 0]}}
    return prompt


async def _until_done(ws: Any, prompt_id: str) -> int:
    """Frames received up to this prompt's `executing {node: null}`."""
    frames = 0
    while True:
        frame = await ws.recv()
        frames += 1
        if isinstance(frame, str):
            message = json.loads(frame)
            data = message["data"]
            if (
                message["type"] == "executing"
                and data.get("node") is None
                and (data.get("prompt_id") == prompt_id)
            ):
                return frames


async def post_latency(sim: SimulatedComfyUI, requests: int) -> list[float]:
    """POST round trips on an idle queue, as PROTOCOL.md §8 measured them."""
    samples = []
    async with (
        httpx.AsyncClient(base_url=sim.base_url, timeout=30) as http,
        connect(sim.ws_url + "?clientId=bench-post", max_size=None) as ws,
    ):
        await ws.recv()
        for index in range(requests):
            body = {"prompt": trivial_graph(index), "client_id": "bench-post"}
            started = time.perf_counter()
            response = await http.post("/prompt", json=body)
            samples.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
            await _until_done(ws, response.json()["prompt_id"])
    return samples


async def events_per_second(sim: SimulatedComfyUI, prompts: int, steps: int) -> tuple[int, float]:
    async with (
        httpx.AsyncClient(base_url=sim.base_url, timeout=30) as http,
        connect(sim.ws_url + "?clientId=bench-ws", max_size=None) as ws,
    ):
        await ws.recv()
        started = time.perf_counter()
        last_id = ""
        for index in range(prompts):
            body = {"prompt": _chatty(index + 1, steps), "client_id": "bench-ws"}
            last_id = (await http.post("/prompt", json=body)).json()["prompt_id"]
        events = await _until_done(ws, last_id)
        return events, time.perf_counter() - started


async def main(requests: int, prompts: int, steps: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-sim-") as data_dir:
        sim = SimulatedComfyUI("127.0.0.1", 0, data_dir=pathlib.Path(data_dir))
        await sim.start()
        try:
            latency = await post_latency(sim, requests)
            events, elapsed = await events_per_second(sim, prompts, steps)
        finally:
            await sim.stop()
    print(
        f"simulator POST /prompt latency over {requests} requests (ms): "
        f"p50 {statistics.median(latency):.2f}  p95 {percentile(latency, 0.95):.2f}  "
        f"p99 {percentile(latency, 0.99):.2f}  max {max(latency):.2f}"
    )
    print(
        f"simulator WS events: {events} events for {prompts} prompts in {elapsed:.2f} s "
        f"= {events / elapsed:.0f} events/s (one client, {steps}-step SlowProgress)"
    )
    print("rerun: .venv/bin/python bench/bench_simulator.py")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500, help="POST /prompt samples (max 5000)")
    parser.add_argument("--prompts", type=int, default=200, help="prompts in the WS run (max 2000)")
    parser.add_argument("--steps", type=int, default=10, help="progress steps per prompt")
    options = parser.parse_args()
    asyncio.run(
        asyncio.wait_for(
            main(min(options.requests, 5000), min(options.prompts, 2000), options.steps),
            GUARD_SECONDS,
        )
    )
