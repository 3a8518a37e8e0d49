"""The event parser against real messages recorded from ComfyUI."""

from __future__ import annotations

import json
import struct

import pytest

from servers.comfyui import (
    EventParseError,
    Executed,
    Executing,
    ExecutionCached,
    ExecutionError,
    ExecutionInterrupted,
    ExecutionStart,
    ExecutionSuccess,
    FeatureFlags,
    FileRef,
    PreviewImage,
    Progress,
    ProgressState,
    ProgressText,
    Status,
    UnknownEvent,
    is_prompt_end,
    parse_binary,
    parse_frame,
    parse_text,
)
from servers.comfyui.parser import KNOWN_TEXT_TYPES

from .capture import binary_records, rebuild_binary_frame, text_messages

EXPECTED_CLASSES = {
    "status": Status,
    "execution_start": ExecutionStart,
    "execution_cached": ExecutionCached,
    "executing": Executing,
    "progress": Progress,
    "progress_state": ProgressState,
    "executed": Executed,
    "execution_success": ExecutionSuccess,
    "execution_error": ExecutionError,
    "execution_interrupted": ExecutionInterrupted,
    "feature_flags": FeatureFlags,
}


def test_capture_contains_every_catalogued_message_type():
    assert {m["type"] for m in text_messages()} == set(EXPECTED_CLASSES) == KNOWN_TEXT_TYPES


def test_every_captured_text_message_parses_to_its_typed_event():
    for message in text_messages():
        event = parse_text(json.dumps(message))
        assert type(event) is EXPECTED_CLASSES[message["type"]], message
        assert event.type == message["type"]
        assert event.prompt_id == message["data"].get("prompt_id")


def test_connect_status_carries_sid_and_queue_size():
    message = next(m for m in text_messages() if m["type"] == "status" and "sid" in m["data"])
    event = parse_text(json.dumps(message))
    assert event == Status(queue_remaining=0, sid=message["data"]["sid"])


def test_executing_null_marks_the_end_of_a_prompt():
    ends = [
        parse_text(json.dumps(m))
        for m in text_messages()
        if m["type"] == "executing" and m["data"]["node"] is None
    ]
    assert ends
    assert all(e.finished and is_prompt_end(e) and e.display_node is None for e in ends)


def test_executing_sent_on_reconnect_has_a_node_but_no_prompt():
    (event,) = (
        parse_text(json.dumps(m))
        for m in text_messages()
        if m["type"] == "executing" and "prompt_id" not in m["data"]
    )
    assert event == Executing(node="2", prompt_id=None)
    assert not is_prompt_end(event)


def test_progress_state_lists_every_started_node():
    message = next(
        m for m in text_messages() if m["type"] == "progress_state" and len(m["data"]["nodes"]) == 3
    )
    event = parse_text(json.dumps(message))
    assert set(event.nodes) == {"1", "2", "3"}
    first = event.nodes["1"]
    assert first.state == "finished"
    assert first.value == first.max
    assert first.real_node_id == "1"


def test_executed_names_its_output_files():
    message = next(
        m for m in text_messages() if m["type"] == "executed" and "images" in m["data"]["output"]
    )
    event = parse_text(json.dumps(message))
    images = message["data"]["output"]["images"]
    assert event.files == tuple(FileRef(i["filename"], i["subfolder"], i["type"]) for i in images)


def test_execution_error_keeps_the_exception():
    message = next(m for m in text_messages() if m["type"] == "execution_error")
    event = parse_text(json.dumps(message))
    assert event.node_type == "FailNode"
    assert event.exception_type == "RuntimeError"
    assert event.exception_message == "comfyweb test failure\n"
    assert event.executed == ("1",)
    assert event.traceback
    assert all(isinstance(line, str) for line in event.traceback)


def test_execution_cached_lists_cached_nodes_in_prompt_order():
    cached = [parse_text(json.dumps(m)) for m in text_messages() if m["type"] == "execution_cached"]
    assert ("1", "2", "3") in [e.nodes for e in cached]
    assert () in [e.nodes for e in cached]


def test_feature_flags_answer_is_kept_as_flags():
    message = next(m for m in text_messages() if m["type"] == "feature_flags")
    event = parse_text(json.dumps(message))
    assert event.flags == {"supports_preview_metadata": True, "max_upload_size": 104857600}


def test_unknown_message_type_is_kept_verbatim():
    event = parse_text(json.dumps({"type": "crystools.monitor", "data": {"cpu": 12.5}}))
    assert event == UnknownEvent(type="crystools.monitor", data={"cpu": 12.5})


def test_unknown_message_with_a_prompt_id_can_still_be_routed():
    event = parse_text(json.dumps({"type": "new_thing", "data": {"prompt_id": "p1"}}))
    assert isinstance(event, UnknownEvent)
    assert event.prompt_id == "p1"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "[]",
        '{"data": {}}',
        '{"type": 5, "data": {}}',
        '{"type": "status", "data": []}',
        '{"type": "status", "data": {"status": {}}}',
        '{"type": "execution_start", "data": {"prompt_id": 7}}',
        '{"type": "executing", "data": {}}',
        '{"type": "progress", "data": {"value": "1", "max": 2}}',
        '{"type": "progress_state", "data": {"prompt_id": "p", "nodes": {"1": 3}}}',
        "[" * 100_000,
    ],
)
def test_malformed_text_raises_only_the_parse_error(text):
    with pytest.raises(EventParseError):
        parse_text(text)


# -- binary frames ------------------------------------------------------------------


def test_every_captured_binary_frame_decodes():
    records = list(binary_records())
    assert {r["event_type"] for r in records} == {1, 3, 4}
    for record in records:
        event = parse_frame(rebuild_binary_frame(record))
        if record["event_type"] == 3:
            assert event == ProgressText(node_id=record["node_id"], text=record["text"])
        else:
            assert isinstance(event, PreviewImage)
            assert event.frame_type == record["event_type"]
            assert event.mime_type == "image/png"
            assert len(event.image) == record["image_len"]
            assert event.image.startswith(bytes.fromhex(record["image_magic_hex"]))


def test_preview_with_metadata_names_its_prompt_and_node():
    record = next(r for r in binary_records() if r["event_type"] == 4)
    event = parse_binary(rebuild_binary_frame(record))
    assert event.prompt_id == record["metadata"]["prompt_id"]
    assert event.node_id == event.display_node_id == event.real_node_id == "2"
    assert event.parent_node_id is None


def test_legacy_preview_names_no_prompt():
    record = next(r for r in binary_records() if r["event_type"] == 1)
    event = parse_binary(rebuild_binary_frame(record))
    assert event.prompt_id is None
    assert event.node_id is None


def test_jpeg_preview_format_is_recognised():
    event = parse_binary(struct.pack(">II", 1, 1) + b"\xff\xd8\xff")
    assert event.mime_type == "image/jpeg"
    assert event.image == b"\xff\xd8\xff"


def test_unknown_binary_type_is_kept():
    event = parse_binary(struct.pack(">I", 9) + b"payload")
    assert event == UnknownEvent(type="binary:9", data=b"payload")


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\x00\x00\x00",
        struct.pack(">I", 1) + b"\x00\x00",
        struct.pack(">II", 3, 10) + b"abc",
        struct.pack(">II", 3, 1) + b"\xff" + b"text",
        struct.pack(">II", 4, 50) + b"{}",
        struct.pack(">II", 4, 2) + b"[]" + b"img",
        struct.pack(">II", 4, 2) + b"{}" + b"img",
        struct.pack(">II", 4, 3) + b"{x}" + b"img",
    ],
)
def test_malformed_binary_raises_only_the_parse_error(frame):
    with pytest.raises(EventParseError):
        parse_binary(frame)
