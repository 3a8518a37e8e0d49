"""ComfyUIClient against recorded ComfyUI answers (httpx.MockTransport) and real sockets.

The simulator tests drive the client end to end; these pin each status and
body shape of PROTOCOL.md to the error or value the client turns it into.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from servers.comfyui import (
    BadRequest,
    ComfyUIClient,
    FileRef,
    Forbidden,
    NotFound,
    PromptRejected,
    ProtocolError,
    ServerError,
    ServerTimeout,
    ServerUnavailable,
    Timeouts,
)

from .capture import http_records, object_info_sample
from .fakes import closed_port


def files_in(directory: Path) -> list[Path]:
    return list(directory.iterdir())


PNG = bytes.fromhex("89504e470d0a1a0a") + b"\0" * 600


def reply(record: dict) -> httpx.Response:
    """The recorded answer (empty-body 200s come back without a content type)."""
    body = record["body"]
    if record["content_type"].startswith("application/json"):
        return httpx.Response(record["status"], json=body)
    if record["content_type"].startswith("text/plain"):
        return httpx.Response(record["status"], text=body)
    return httpx.Response(record["status"])


@pytest.fixture
async def make_client() -> AsyncIterator[Callable[..., ComfyUIClient]]:
    clients: list[ComfyUIClient] = []

    def make(handler: Callable[[httpx.Request], httpx.Response], **kwargs) -> ComfyUIClient:
        kwargs.setdefault("retry_base", 0)
        client = ComfyUIClient(
            "http://127.0.0.1:8188", transport=httpx.MockTransport(handler), **kwargs
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


# -- POST /prompt -------------------------------------------------------------------


async def test_submit_sends_our_prompt_id_and_client_id(make_client):
    record = next(http_records("POST", "/prompt"))
    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, json={**record["body"], "prompt_id": seen[-1]["prompt_id"]})

    client = make_client(handler)
    prompt = record["req_json"]["prompt"]
    receipt = await client.submit(
        prompt, client_id="monitor-1", prompt_id="ours-1", extra_data={"k": 1}
    )
    assert seen == [
        {"prompt": prompt, "prompt_id": "ours-1", "client_id": "monitor-1", "extra_data": {"k": 1}}
    ]
    assert receipt.prompt_id == "ours-1"
    assert receipt.number == record["body"]["number"]
    assert not receipt.partially_rejected


async def test_submit_chooses_a_fresh_prompt_id_when_none_is_given(make_client):
    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, json={"prompt_id": seen[-1]["prompt_id"], "number": 0})

    receipt = await make_client(handler).submit({"1": {}}, front=True, number=-100)
    assert uuid.UUID(receipt.prompt_id)
    assert seen[0]["front"] is True
    assert seen[0]["number"] == -100
    assert "client_id" not in seen[0]


def rejected_records() -> list[dict]:
    return [r for r in http_records("POST", "/prompt") if r["status"] == 400]


@pytest.mark.parametrize("record", rejected_records(), ids=lambda r: r["body"]["error"]["type"])
async def test_every_recorded_400_is_a_permanent_prompt_rejection(make_client, record):
    client = make_client(lambda request: reply(record))
    with pytest.raises(PromptRejected) as caught:
        await client.submit(record["req_json"].get("prompt", {}))
    error = caught.value
    assert error.permanent
    assert not error.retryable
    assert error.error.type == record["body"]["error"]["type"]
    assert error.error.message == record["body"]["error"]["message"]
    assert set(error.node_errors) == set(record["body"]["node_errors"])


async def test_rejection_carries_the_servers_message_per_node(make_client):
    record = next(
        r
        for r in rejected_records()
        if r["body"]["error"]["type"] == "prompt_outputs_failed_validation"
    )
    client = make_client(lambda request: reply(record))
    with pytest.raises(PromptRejected) as caught:
        await client.submit({})
    (node_id, node) = next(iter(caught.value.node_errors.items()))
    raw = record["body"]["node_errors"][node_id]
    assert node.class_type == raw["class_type"]
    assert [e.type for e in node.errors] == [e["type"] for e in raw["errors"]]
    assert node.dependent_outputs == tuple(raw["dependent_outputs"])
    assert caught.value.messages_by_node[node_id][0].startswith(raw["errors"][0]["message"])
    assert raw["errors"][0]["message"] in str(caught.value)


async def test_partially_valid_prompt_is_queued_with_its_node_errors(make_client):
    record = next(
        r
        for r in http_records("POST", "/prompt")
        if r["status"] == 200 and r["body"]["node_errors"]
    )
    receipt = await make_client(lambda request: reply(record)).submit({})
    assert receipt.partially_rejected
    assert receipt.node_errors["2"].errors[0].type == "exception_during_validation"


async def test_recorded_500_on_a_garbled_body_is_a_transient_server_error(make_client):
    record = next(r for r in http_records("POST", "/prompt") if r["status"] == 500)
    with pytest.raises(ServerError) as caught:
        await make_client(lambda request: reply(record)).submit({})
    assert caught.value.retryable
    assert caught.value.status == 500


async def test_a_400_without_a_validation_body_is_still_permanent(make_client):
    client = make_client(lambda request: httpx.Response(400, text="<html>bad</html>"))
    with pytest.raises(BadRequest) as caught:
        await client.submit({})
    assert caught.value.permanent


# -- queue, interrupt, history --------------------------------------------------------


async def test_queue_items_are_parsed_from_their_five_element_arrays(make_client):
    record = next(r for r in http_records("GET", "/queue") if r["body"]["queue_pending"])
    queue = await make_client(lambda request: reply(record)).get_queue()
    running = queue.running[0]
    raw = record["body"]["queue_running"][0]
    assert (running.number, running.prompt_id, running.prompt) == (raw[0], raw[1], raw[2])
    assert running.client_id == raw[3]["client_id"]
    assert running.outputs_to_execute == tuple(raw[4])
    assert queue.remaining == 1 + len(record["body"]["queue_pending"])


async def test_pending_prompts_sort_into_execution_order(make_client):
    record = next(r for r in http_records("GET", "/queue") if "_note" in r["body"])
    queue = await make_client(lambda request: reply(record)).get_queue()
    assert [i.number for i in queue.pending] == [-100.0, 18, -19]
    assert [i.number for i in queue.pending_in_execution_order] == [-100.0, -19, 18]


async def test_empty_bodied_posts_are_accepted(make_client):
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200)  # as ComfyUI: no body, no content type

    client = make_client(handler)
    await client.delete_queued(["p2"])
    await client.clear_queue()
    await client.interrupt("p1")
    await client.interrupt_running()
    await client.free(free_memory=True)
    await client.delete_history(["p1"])
    await client.clear_history()
    assert [(r.url.path, json.loads(r.content)) for r in requests] == [
        ("/queue", {"delete": ["p2"]}),
        ("/queue", {"clear": True}),
        ("/interrupt", {"prompt_id": "p1"}),
        ("/interrupt", {}),
        ("/free", {"unload_models": False, "free_memory": True}),
        ("/history", {"delete": ["p1"]}),
        ("/history", {"clear": True}),
    ]


async def test_history_entries_are_parsed_from_the_capture(make_client):
    # Some recorded bodies were trimmed by the capture tool; they lack "prompt".
    records = [
        r
        for r in http_records("GET", "/history/", prefix=True)
        if all("prompt" in entry for entry in r["body"].values())
    ]
    finished = 0
    for record in records:
        prompt_id = record["path"].rsplit("/", 1)[1]
        client = make_client(lambda request, record=record: reply(record))
        entry = await client.get_history(prompt_id)
        if not record["body"]:
            assert entry is None  # unknown, pending or running: {}
            continue
        raw = record["body"][prompt_id]
        assert entry.item.prompt_id == prompt_id
        assert entry.status_str == raw["status"]["status_str"]
        assert [kind for kind, _ in entry.messages] == [m[0] for m in raw["status"]["messages"]]
        finished += 1
    assert finished >= 4


async def test_interrupted_run_is_told_apart_from_a_failed_one(make_client):
    by_scenario = {
        r["scenario"]: r
        for r in http_records("GET", "/history/", prefix=True)
        if r["scenario"] in ("interrupt", "error")
    }
    for scenario, interrupted in (("interrupt", True), ("error", False)):
        record = by_scenario[scenario]
        prompt_id = record["path"].rsplit("/", 1)[1]
        entry = await make_client(lambda request, record=record: reply(record)).get_history(
            prompt_id
        )
        assert not entry.succeeded
        assert entry.interrupted is interrupted
        assert (entry.error is not None) is not interrupted


async def test_history_entry_lists_its_output_files(make_client):
    record = next(
        r for r in http_records("GET", "/history/", prefix=True) if r["scenario"] == "success"
    )
    prompt_id = record["path"].rsplit("/", 1)[1]
    entry = await make_client(lambda request: reply(record)).get_history(prompt_id)
    assert entry.files() == (FileRef("comfyweb_slow_00001_.png", "", "output"),)


# -- files -----------------------------------------------------------------------------


async def test_download_streams_an_output_into_a_file(make_client, tmp_path: Path):
    def handler(request: httpx.Request) -> httpx.Response:
        assert dict(request.url.params) == {
            "filename": "a_00001_.png",
            "subfolder": "sub",
            "type": "temp",
        }
        return httpx.Response(200, content=PNG, headers={"content-type": "image/png"})

    dest = tmp_path / "a.png"
    size = await make_client(handler).download(FileRef("a_00001_.png", "sub", "temp"), dest)
    assert size == len(PNG)
    assert dest.read_bytes() == PNG
    assert files_in(tmp_path) == [dest]


@pytest.mark.parametrize(
    ("status", "error"), [(404, NotFound), (400, BadRequest), (403, Forbidden)]
)
async def test_view_error_codes_are_permanent_and_leave_no_file(
    make_client, tmp_path: Path, status, error
):
    client = make_client(lambda request: httpx.Response(status))
    with pytest.raises(error) as caught:
        await client.download(FileRef("nope.png"), tmp_path / "nope.png")
    assert caught.value.permanent
    assert files_in(tmp_path) == []


async def test_upload_sends_the_multipart_fields_comfyui_reads(make_client):
    record = next(
        r for r in http_records("POST", "/upload/image") if "overwrite" in r["req_multipart"]
    )
    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
        seen.append(request.content)
        return reply(record)

    ref = await make_client(handler).upload_image(
        PNG, "comfyweb_input.png", subfolder="", overwrite=True
    )
    assert ref == FileRef("comfyweb_input.png", "", "input")
    body = seen[0]
    assert b'name="image"; filename="comfyweb_input.png"' in body
    assert PNG in body
    for field, value in (("type", b"input"), ("subfolder", b""), ("overwrite", b"true")):
        assert f'name="{field}"\r\n\r\n'.encode() + value + b"\r\n" in body


async def test_upload_of_a_path_uses_its_name(make_client, tmp_path: Path):
    source = tmp_path / "local.png"
    source.write_bytes(PNG)

    def handler(request: httpx.Request) -> httpx.Response:
        assert b'filename="local.png"' in request.content
        return httpx.Response(200, json={"name": "local (1).png", "subfolder": "", "type": "input"})

    assert (await make_client(handler).upload_image(source)).filename == "local (1).png"


# -- server information -------------------------------------------------------------------


def recorded_gets() -> dict[str, dict]:
    answers = {}
    for record in (
        *http_records("GET", "/system_stats"),
        *http_records("GET", "/models", prefix=True),
        *http_records("GET", "/object_info", prefix=True),
        *http_records("GET", "/features"),
        *http_records("GET", "/embeddings"),
        *http_records("GET", "/prompt"),
    ):
        answers[record["path"]] = record
    return answers


async def test_server_information_is_read_from_recorded_answers(make_client):
    answers = recorded_gets()
    client = make_client(lambda request: reply(answers[request.url.path]))
    stats = await client.system_stats()
    assert stats.comfyui_version == "0.3.64"
    assert stats.devices[0].type == "cpu"
    assert stats.devices[0].index is None
    assert "checkpoints" in await client.model_folders()
    assert await client.models("checkpoints") == []
    assert (await client.node_info("EmptyImage"))["input"]["required"]["width"][0] == "INT"
    assert await client.node_info("NoSuchNode") is None
    assert (await client.features())["supports_preview_metadata"] is True
    assert await client.embeddings() == []
    assert await client.queue_remaining() == 0


async def test_object_info_returns_the_catalogue(make_client):
    catalogue = object_info_sample()
    client = make_client(lambda request: httpx.Response(200, json=catalogue))
    info = await client.object_info()
    assert set(info) == set(catalogue)
    assert "SlowProgress" in info


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>login</html>", headers={"content-type": "text/html"}),
        httpx.Response(200, json=["not", "an", "object"]),
        httpx.Response(200, json={"queue_running": [], "queue_pending": [["x", "y"]]}),
        httpx.Response(200, json={"queue_running": [[1]], "queue_pending": []}),
    ],
)
async def test_malformed_answers_are_a_protocol_error(make_client, response):
    with pytest.raises(ProtocolError) as caught:
        await make_client(lambda request: response).get_queue()
    assert caught.value.retryable


# -- the HTTP layer -----------------------------------------------------------------------


async def test_gets_are_retried_a_bounded_number_of_times(make_client):
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(503) if len(calls) < 3 else httpx.Response(200, json={})

    with pytest.raises(ServerError):
        await make_client(handler, get_retries=1).features()
    assert len(calls) == 2
    assert await make_client(handler, get_retries=1).features() == {}


async def test_posts_are_never_retried(make_client):
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(502)

    with pytest.raises(ServerError):
        await make_client(handler, get_retries=3).submit({})
    assert len(calls) == 1


async def test_auth_headers_and_timeouts_go_on_every_request(make_client):
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"exec_info": {"queue_remaining": 2}})

    client = make_client(
        handler,
        headers={"Authorization": "Bearer t0ken"},
        timeouts=Timeouts(connect=1.5, read=7, write=8, pool=2),
    )
    assert await client.queue_remaining() == 2
    await client.queue_remaining(timeouts=Timeouts(connect=0.5, read=3))
    assert all(r.headers["authorization"] == "Bearer t0ken" for r in seen)
    assert "origin" not in seen[0].headers
    assert seen[0].extensions["timeout"] == {"connect": 1.5, "read": 7, "write": 8, "pool": 2}
    assert seen[1].extensions["timeout"]["read"] == 3


async def test_a_path_prefix_in_the_base_url_is_kept():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    transport = httpx.MockTransport(handler)
    async with ComfyUIClient("https://gpu.example/comfy/", transport=transport) as client:
        await client.get_history("a/b")
    assert seen[0].url.raw_path == b"/comfy/history/a%2Fb"


def test_only_http_base_urls_are_accepted():
    with pytest.raises(ValueError, match="http"):
        ComfyUIClient("ws://127.0.0.1:8188")


async def test_a_server_that_is_down_is_transiently_unavailable():
    async with ComfyUIClient(f"http://127.0.0.1:{closed_port()}", retry_base=0) as client:
        with pytest.raises(ServerUnavailable) as caught:
            await client.system_stats()
    assert caught.value.retryable


async def test_a_server_that_never_answers_times_out():
    accepted = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()
        await reader.read()  # until the client gives up and closes
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        timeouts = Timeouts(connect=5, read=0.2, write=5, pool=5)
        async with ComfyUIClient(f"http://127.0.0.1:{port}", timeouts=timeouts) as client:
            with pytest.raises(ServerTimeout) as caught:
                await client.submit({})
        assert accepted.is_set()
        assert caught.value.retryable
    finally:
        server.close()
        await server.wait_closed()
