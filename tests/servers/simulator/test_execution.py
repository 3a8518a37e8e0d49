"""Execution behaviour over real sockets: interrupts, cache, image nodes,
KSampler progress, output files."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from PIL import Image
from websockets.asyncio.client import ClientConnection, connect

from servers.simulator import SimulatedComfyUI, SimulatorConfig

from .helpers import (
    empty_image,
    empty_save,
    next_message,
    run_to_completion,
    slow_prompt,
    types,
    until,
)


@pytest.fixture
async def http(comfyui_sim: SimulatedComfyUI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=comfyui_sim.base_url, timeout=20) as client:
        yield client


@pytest.fixture
async def ws(comfyui_sim: SimulatedComfyUI) -> AsyncIterator[ClientConnection]:
    async with connect(comfyui_sim.ws_url + "?clientId=me") as socket:
        status = await next_message(socket)
        assert status["data"]["sid"] == "me"
        yield socket


async def _submit(http: httpx.AsyncClient, prompt: dict[str, Any], **extra: Any) -> str:
    response = await http.post("/prompt", json={"prompt": prompt, "client_id": "me", **extra})
    assert response.status_code == 200, response.text
    return response.json()["prompt_id"]


async def _history(http: httpx.AsyncClient, prompt_id: str) -> dict[str, Any]:
    return (await http.get(f"/history/{prompt_id}")).json()[prompt_id]


async def _image(http: httpx.AsyncClient, ref: dict[str, str]) -> Image.Image:
    response = await http.get("/view", params=ref)
    assert response.status_code == 200
    image = Image.open(io.BytesIO(response.content))
    image.load()
    return image


async def test_interrupt_of_running_prompt_sends_execution_interrupted(
    http: httpx.AsyncClient, ws: ClientConnection
) -> None:
    prompt_id = await _submit(http, slow_prompt(steps=500))
    await until(ws, "progress", prompt_id=prompt_id)
    assert (await http.post("/interrupt")).status_code == 200
    frames = await run_to_completion(ws, prompt_id)
    assert types(frames)[-3:] == ["execution_interrupted", "status", "executing"]
    interrupted = frames[-3]["data"]
    assert (interrupted["node_id"], interrupted["node_type"]) == ("2", "SlowProgress")
    assert interrupted["executed"] == ["1"]
    entry = await _history(http, prompt_id)
    assert entry["status"]["status_str"] == "error"
    assert entry["status"]["completed"] is False
    assert entry["status"]["messages"][-1][0] == "execution_interrupted"


async def test_interrupt_naming_another_prompt_is_ignored(
    http: httpx.AsyncClient, ws: ClientConnection
) -> None:
    prompt_id = await _submit(http, slow_prompt(steps=20))
    await until(ws, "progress", prompt_id=prompt_id)
    await http.post("/interrupt", json={"prompt_id": "someone-else"})
    frames = await run_to_completion(ws, prompt_id)
    assert "execution_success" in types(frames)


async def test_interrupt_while_idle_is_forgotten(
    http: httpx.AsyncClient, ws: ClientConnection
) -> None:
    await http.post("/interrupt")
    prompt_id = await _submit(http, slow_prompt(steps=2))
    assert "execution_success" in types(await run_to_completion(ws, prompt_id))


async def test_identical_prompt_is_cached_and_a_new_nonce_runs_again(
    http: httpx.AsyncClient, ws: ClientConnection
) -> None:
    first = await _submit(http, slow_prompt(steps=2, nonce=1))
    await run_to_completion(ws, first)
    again = await _submit(http, slow_prompt(steps=2, nonce=1))
    frames = await run_to_completion(ws, again)
    cached = next(f for f in frames if f["type"] == "execution_cached")
    assert cached["data"]["nodes"] == ["1", "2", "3"]
    assert "executing" not in types(frames)[:-1]
    changed = await _submit(http, slow_prompt(steps=2, nonce=2))
    frames = await run_to_completion(ws, changed)
    cached = next(f for f in frames if f["type"] == "execution_cached")
    assert cached["data"]["nodes"] == ["1"]
    assert [f["data"]["node"] for f in frames if f["type"] == "executing"] == ["2", "3", None]


async def test_free_memory_drops_the_cache(http: httpx.AsyncClient, ws: ClientConnection) -> None:
    first = await _submit(http, empty_save())
    await run_to_completion(ws, first)
    await http.post("/free", json={"free_memory": True})
    again = await _submit(http, empty_save())
    frames = await run_to_completion(ws, again)
    cached = next(f for f in frames if f["type"] == "execution_cached")
    assert cached["data"]["nodes"] == []


async def test_image_nodes_write_real_pngs_of_the_right_size(
    http: httpx.AsyncClient, ws: ClientConnection
) -> None:
    prompt = {
        "1": empty_image(128, 64, 0xFF0000),
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {
            "class_type": "ImageBlur",
            "inputs": {"image": ["2", 0], "blur_radius": 3, "sigma": 1.0},
        },
        "4": {
            "class_type": "ImageScale",
            "inputs": {
                "image": ["3", 0],
                "upscale_method": "bilinear",
                "width": 32,
                "height": 0,
                "crop": "disabled",
            },
        },
        "5": {
            "class_type": "SaveImage",
            "inputs": {"images": ["4", 0], "filename_prefix": "cw/ibs"},
        },
    }
    prompt_id = await _submit(http, prompt, extra_data={"extra_pnginfo": {"workflow": {"n": 1}}})
    await run_to_completion(ws, prompt_id)
    ref = (await _history(http, prompt_id))["outputs"]["5"]["images"][0]
    assert ref == {"filename": "ibs_00001_.png", "subfolder": "cw", "type": "output"}
    image = await _image(http, ref)
    assert image.size == (32, 16)
    assert image.convert("RGB").getpixel((16, 8)) == (0, 255, 255)
    assert json.loads(image.text["prompt"])["5"]["class_type"] == "SaveImage"
    assert json.loads(image.text["workflow"]) == {"n": 1}


async def test_save_counter_continues_from_existing_files(
    http: httpx.AsyncClient, ws: ClientConnection, comfyui_sim: SimulatedComfyUI
) -> None:
    (comfyui_sim.dirs.output / "e_00041_.png").write_bytes(b"old")
    prompt_id = await _submit(http, empty_save())
    await run_to_completion(ws, prompt_id)
    outputs = (await _history(http, prompt_id))["outputs"]
    assert outputs["2"]["images"][0]["filename"] == "e_00042_.png"


def _txt2img(seed: int, steps: int) -> dict[str, Any]:
    return {
        "4": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"},
        },
        "5": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 64, "height": 48, "batch_size": 1},
        },
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["4", 0],
                "seed": seed,
                "steps": steps,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
                "denoise": 1.0,
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "gen"}},
    }


async def test_ksampler_reports_its_steps_and_the_image_follows_the_seed(
    http: httpx.AsyncClient, ws: ClientConnection
) -> None:
    prompt_id = await _submit(http, _txt2img(seed=7, steps=4))
    frames = await run_to_completion(ws, prompt_id)
    progress = [(f["data"]["value"], f["data"]["max"]) for f in frames if f["type"] == "progress"]
    assert progress == [(1, 4), (2, 4), (3, 4), (4, 4)]
    first = await _image(http, (await _history(http, prompt_id))["outputs"]["9"]["images"][0])
    assert first.size == (64, 48)
    other = await _submit(http, _txt2img(seed=8, steps=1))
    await run_to_completion(ws, other)
    second = await _image(http, (await _history(http, other))["outputs"]["9"]["images"][0])
    assert first.tobytes() != second.tobytes()


async def test_failing_node_reports_execution_error_and_skips_downstream(
    http: httpx.AsyncClient, ws: ClientConnection
) -> None:
    prompt = {
        "1": empty_image(8, 8, 0),
        "2": {"class_type": "FailNode", "inputs": {"image": ["1", 0], "message": "boom"}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "f"}},
    }
    prompt_id = await _submit(http, prompt)
    frames = await run_to_completion(ws, prompt_id)
    error = next(f["data"] for f in frames if f["type"] == "execution_error")
    assert error["exception_message"] == "boom\n"
    assert error["exception_type"] == "RuntimeError"
    assert error["current_inputs"]["message"] == ["boom"]
    assert [f["data"]["node"] for f in frames if f["type"] == "executing"] == ["1", "2", None]


async def test_failure_rate_one_fails_every_prompt(tmp_path) -> None:
    sim = SimulatedComfyUI(
        data_dir=tmp_path, config=SimulatorConfig(time_scale=0.1, failure_rate=1.0, seed=1)
    )
    await sim.start()
    try:
        async with (
            httpx.AsyncClient(base_url=sim.base_url) as http,
            connect(sim.ws_url + "?clientId=me") as socket,
        ):
            await next_message(socket)
            prompt_id = await _submit(http, empty_save())
            frames = await run_to_completion(socket, prompt_id)
            assert "execution_error" in types(frames)
    finally:
        await sim.stop()


async def _drain_after_close(socket: ClientConnection) -> list[Any]:
    """Close and return what had arrived: the server's close frame follows
    anything it sent on this connection, so nothing can still be in flight."""
    await socket.close()
    return [frame async for frame in socket]


async def test_second_socket_with_the_same_client_id_silences_the_first(
    http: httpx.AsyncClient, ws: ClientConnection, comfyui_sim: SimulatedComfyUI
) -> None:
    async with connect(comfyui_sim.ws_url + "?clientId=me") as newer:
        await next_message(newer)
        prompt_id = await _submit(http, empty_save())
        await run_to_completion(newer, prompt_id)
        # Not even the status broadcasts reach the replaced socket.
        assert await _drain_after_close(ws) == []


async def test_closing_the_older_socket_silences_the_newer_one(
    http: httpx.AsyncClient, ws: ClientConnection, comfyui_sim: SimulatedComfyUI
) -> None:
    async with (
        connect(comfyui_sim.ws_url + "?clientId=me") as newer,
        connect(comfyui_sim.ws_url + "?clientId=watcher") as watcher,
    ):
        await next_message(newer)
        await next_message(watcher)
        await ws.close()
        prompt_id = await _submit(http, empty_save())
        await until(watcher, "status", status={"exec_info": {"queue_remaining": 0}})
        assert (await http.get(f"/history/{prompt_id}")).json() != {}
        assert await _drain_after_close(newer) == []
