"""HTTP behaviour beyond the recorded scenarios: the Origin check, /api, /view
errors, upload naming, history paging, model lists."""

from __future__ import annotations

import asyncio
import io
import json

import httpx
import pytest
from PIL import Image
from websockets.asyncio.client import connect

from servers.simulator import SimulatedComfyUI, SimulatorConfig

from .helpers import empty_save


def _png(color: tuple[int, int, int] = (1, 2, 3)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
async def http(comfyui_sim: SimulatedComfyUI):
    async with httpx.AsyncClient(base_url=comfyui_sim.base_url, timeout=20) as client:
        yield client


@pytest.mark.parametrize("origin", ["http://localhost:3000", "http://127.0.0.1:3000"])
async def test_foreign_origin_against_loopback_host_is_forbidden(
    http: httpx.AsyncClient, origin: str
) -> None:
    response = await http.post("/prompt", json={}, headers={"Origin": origin})
    assert response.status_code == 403
    assert response.content == b""


async def test_same_origin_and_no_origin_are_allowed(
    http: httpx.AsyncClient, comfyui_sim: SimulatedComfyUI
) -> None:
    same = await http.get("/queue", headers={"Origin": comfyui_sim.base_url})
    assert same.status_code == 200
    assert (await http.get("/queue")).status_code == 200


async def test_websocket_upgrade_from_foreign_origin_is_forbidden(
    http: httpx.AsyncClient,
) -> None:
    response = await http.get(
        "/ws",
        headers={
            "Origin": "http://localhost:3000",
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        },
    )
    assert response.status_code == 403


async def test_options_on_any_path_is_an_empty_200(http: httpx.AsyncClient) -> None:
    response = await http.options("/anything/at/all")
    assert response.status_code == 200
    assert response.content == b""


async def test_every_route_also_answers_under_api(http: httpx.AsyncClient) -> None:
    for path in ("/queue", "/system_stats", "/object_info/EmptyImage", "/history", "/features"):
        plain, api = await http.get(path), await http.get("/api" + path)
        assert (plain.status_code, api.status_code) == (200, 200)
        assert plain.headers["content-type"] == api.headers["content-type"]


async def test_unknown_path_is_404(http: httpx.AsyncClient) -> None:
    assert (await http.get("/no/such/thing")).status_code == 404


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ({}, 404),
        ({"filename": "missing.png"}, 404),
        ({"filename": "../secret.png"}, 400),
        ({"filename": "/etc/passwd"}, 400),
        ({"filename": "x.png", "type": "elsewhere"}, 400),
        ({"filename": "x.png", "subfolder": "../.."}, 403),
    ],
)
async def test_view_errors_have_the_real_status_and_an_empty_body(
    http: httpx.AsyncClient, query: dict[str, str], status: int
) -> None:
    response = await http.get("/view", params=query)
    assert response.status_code == status
    assert response.content == b""


async def test_upload_names_follow_comfyui_rules(
    http: httpx.AsyncClient, comfyui_sim: SimulatedComfyUI
) -> None:
    async def upload(data: bytes, **fields: str) -> dict[str, str]:
        response = await http.post(
            "/upload/image", files={"image": ("in.png", data, "image/png")}, data=fields
        )
        assert response.status_code == 200
        return response.json()

    first, other = _png(), _png((9, 9, 9))
    assert await upload(first) == {"name": "in.png", "subfolder": "", "type": "input"}
    assert (await upload(first))["name"] == "in.png"
    assert (await upload(other))["name"] == "in (1).png"
    assert (await upload(other, overwrite="true"))["name"] == "in.png"
    assert (comfyui_sim.dirs.input / "in.png").read_bytes() == other
    assert await upload(first, type="temp", subfolder="sub") == {
        "name": "in.png",
        "subfolder": "sub",
        "type": "temp",
    }


async def test_uploaded_image_is_served_and_loadable(http: httpx.AsyncClient) -> None:
    await http.post("/upload/image", files={"image": ("up.png", _png(), "image/png")})
    view = await http.get("/view", params={"filename": "up.png [input]"})
    assert view.status_code == 200
    assert view.headers["content-type"] == "image/png"
    assert view.headers["content-disposition"] == 'filename="up.png"'
    info = (await http.get("/object_info/LoadImage")).json()
    assert info["LoadImage"]["input"]["required"]["image"][0] == ["up.png"]


async def test_view_can_reencode_a_preview(http: httpx.AsyncClient) -> None:
    await http.post("/upload/image", files={"image": ("p.png", _png(), "image/png")})
    response = await http.get(
        "/view", params={"filename": "p.png", "type": "input", "preview": "jpeg;80"}
    )
    assert response.headers["content-type"] == "image/jpeg"
    assert response.content[:2] == b"\xff\xd8"


async def test_history_bad_max_items_is_a_500(http: httpx.AsyncClient) -> None:
    assert (await http.get("/history", params={"max_items": "x"})).status_code == 500


async def test_rejected_prompt_still_advances_the_counter(http: httpx.AsyncClient) -> None:
    rejected = await http.post("/prompt", json={"prompt": {"1": {"inputs": {}}}})
    assert rejected.status_code == 400
    accepted = await http.post("/prompt", json={"prompt": empty_save()})
    assert accepted.json()["number"] == 1


async def test_model_lists_come_from_the_config(tmp_path) -> None:
    config = SimulatorConfig(models={"checkpoints": ["b.safetensors", "a.safetensors"]})
    sim = SimulatedComfyUI(data_dir=tmp_path, config=config)
    await sim.start()
    try:
        async with httpx.AsyncClient(base_url=sim.base_url) as client:
            assert (await client.get("/models/checkpoints")).json() == [
                "a.safetensors",
                "b.safetensors",
            ]
            assert (await client.get("/models/loras")).json() == []
            assert (await client.get("/models/nonsense")).status_code == 404
            info = (await client.get("/object_info")).json()
            ckpt = info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"]
            assert ckpt[0] == ["a.safetensors", "b.safetensors"]
    finally:
        await sim.stop()


async def test_empty_200s_have_no_content_type(http: httpx.AsyncClient) -> None:
    for path, body in (
        ("/interrupt", None),
        ("/queue", {"clear": True}),
        ("/history", {"clear": True}),
        ("/free", {"free_memory": True}),
    ):
        response = await http.post(path, content=json.dumps(body) if body else b"")
        assert response.status_code == 200
        assert response.content == b""
        assert "content-type" not in response.headers


async def test_websocket_also_answers_under_api(comfyui_sim: SimulatedComfyUI) -> None:
    url = comfyui_sim.base_url.replace("http", "ws", 1) + "/api/ws?clientId=viaapi"
    async with connect(url) as socket:
        status = json.loads(await asyncio.wait_for(socket.recv(), 20))
    assert status == {
        "type": "status",
        "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "viaapi"},
    }


async def test_feature_flags_are_answered_only_as_the_first_message(
    comfyui_sim: SimulatedComfyUI,
) -> None:
    flags = json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
    async with connect(comfyui_sim.ws_url) as socket:
        await socket.recv()
        await socket.send(flags)
        reply = json.loads(await asyncio.wait_for(socket.recv(), 20))
        assert reply == {
            "type": "feature_flags",
            "data": {"supports_preview_metadata": True, "max_upload_size": 104857600},
        }
        await socket.send(flags)
        await socket.close()
        assert [frame async for frame in socket] == []
