"""Frames to typed events: text messages (JSON) and binary frames.

The contract the stream relies on: whatever a socket delivers, `parse_frame`
returns an `Event` or raises `EventParseError`, nothing else. Known types with
fields of the wrong type are parse errors; unknown types become `UnknownEvent`.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Mapping
from typing import Any

from . import events
from .errors import EventParseError

# Image format codes of binary frame 1 (ComfyUI's BinaryEventTypes / preview formats).
_IMAGE_FORMATS = {1: "image/jpeg", 2: "image/png"}
_U32 = struct.Struct(">I")


def parse_frame(frame: str | bytes) -> events.Event:
    """One WebSocket frame as websockets delivers it: str for text, bytes for binary."""
    if isinstance(frame, str):
        return parse_text(frame)
    return parse_binary(frame)


def parse_text(text: str) -> events.Event:
    try:
        # RecursionError: deeply nested arrays are valid JSON that json cannot load.
        message = json.loads(text)
    except Exception as exc:
        raise EventParseError(f"text frame is not JSON: {type(exc).__name__}") from None
    return parse_message(message)


def parse_message(message: object) -> events.Event:
    """A decoded `{"type": ..., "data": ...}` message."""
    try:
        return _parse_message(message)
    except EventParseError:
        raise
    except Exception as exc:  # the safety net behind the explicit checks
        raise EventParseError(f"malformed message: {type(exc).__name__}: {exc}") from exc


def parse_binary(frame: bytes) -> events.Event:
    if not isinstance(frame, bytes | bytearray | memoryview):
        raise EventParseError(f"binary frame is {type(frame).__name__}, not bytes")
    try:
        return _parse_binary(bytes(frame))
    except EventParseError:
        raise
    except Exception as exc:
        raise EventParseError(f"malformed binary frame: {type(exc).__name__}: {exc}") from exc


# -- text -------------------------------------------------------------------------


def _parse_message(message: object) -> events.Event:
    if not isinstance(message, Mapping):
        raise EventParseError("message is not a JSON object")
    kind = message.get("type")
    if not isinstance(kind, str):
        raise EventParseError("message has no string 'type'")
    data = message.get("data")
    builder = _BUILDERS.get(kind)
    if builder is None:
        # Kept whole; its prompt_id (if it has a usable one) still routes it.
        prompt_id = data.get("prompt_id") if isinstance(data, Mapping) else None
        return events.UnknownEvent(
            type=kind, data=data, prompt_id=prompt_id if isinstance(prompt_id, str) else None
        )
    if not isinstance(data, Mapping):
        raise EventParseError(f"{kind}: 'data' is not an object")
    return builder(data)


def _fail(field: str, expected: str) -> EventParseError:
    return EventParseError(f"field {field!r} is not {expected}")


def _str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise _fail(key, "a string")
    return value


def _opt_str(data: object, key: str) -> str | None:
    if not isinstance(data, Mapping):
        return None
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _fail(key, "a string or null")
    return value


def _number(data: Mapping[str, Any], key: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(key, "a number")
    return value


def _opt_int(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(key, "an integer")
    return value


def _str_tuple(data: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(key, "a list of strings")
    return tuple(value)


def _mapping(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(key, "an object")
    return value


def _status(data: Mapping[str, Any]) -> events.Status:
    status = _mapping(data, "status")
    exec_info = _mapping(status, "exec_info")
    remaining = _opt_int(exec_info, "queue_remaining")
    if remaining is None:
        raise _fail("status.exec_info.queue_remaining", "an integer")
    return events.Status(queue_remaining=remaining, sid=_opt_str(data, "sid"))


def _execution_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of `ExecutionEvent`, which every `execution_*` message has."""
    return {"prompt_id": _str(data, "prompt_id"), "timestamp": _opt_int(data, "timestamp")}


def _halted_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of `ExecutionHalted`: an error's or an interrupt's."""
    return _execution_fields(data) | {
        "node_id": _opt_str(data, "node_id"),
        "node_type": _opt_str(data, "node_type"),
        "executed": _str_tuple(data, "executed"),
    }


def _execution_start(data: Mapping[str, Any]) -> events.ExecutionStart:
    return events.ExecutionStart(**_execution_fields(data))


def _execution_cached(data: Mapping[str, Any]) -> events.ExecutionCached:
    return events.ExecutionCached(**_execution_fields(data), nodes=_str_tuple(data, "nodes"))


def _executing(data: Mapping[str, Any]) -> events.Executing:
    if "node" not in data:
        raise _fail("node", "present")
    return events.Executing(
        prompt_id=_opt_str(data, "prompt_id"),
        node=_opt_str(data, "node"),
        display_node=_opt_str(data, "display_node"),
    )


def _progress(data: Mapping[str, Any]) -> events.Progress:
    return events.Progress(
        prompt_id=_opt_str(data, "prompt_id"),
        node=_opt_str(data, "node"),
        value=_number(data, "value"),
        max=_number(data, "max"),
    )


def _node_progress(node_id: str, raw: object) -> events.NodeProgress:
    if not isinstance(raw, Mapping):
        raise _fail(f"nodes.{node_id}", "an object")
    return events.NodeProgress(
        node_id=_opt_str(raw, "node_id") or node_id,
        state=_str(raw, "state"),
        value=_number(raw, "value"),
        max=_number(raw, "max"),
        display_node_id=_opt_str(raw, "display_node_id"),
        parent_node_id=_opt_str(raw, "parent_node_id"),
        real_node_id=_opt_str(raw, "real_node_id"),
    )


def _progress_state(data: Mapping[str, Any]) -> events.ProgressState:
    nodes = _mapping(data, "nodes")
    return events.ProgressState(
        prompt_id=_str(data, "prompt_id"),
        nodes={str(k): _node_progress(str(k), v) for k, v in nodes.items()},
    )


def _executed(data: Mapping[str, Any]) -> events.Executed:
    return events.Executed(
        prompt_id=_opt_str(data, "prompt_id"),
        node=_str(data, "node"),
        display_node=_opt_str(data, "display_node"),
        output=_mapping(data, "output"),
    )


def _execution_success(data: Mapping[str, Any]) -> events.ExecutionSuccess:
    return events.ExecutionSuccess(**_execution_fields(data))


def _execution_error(data: Mapping[str, Any]) -> events.ExecutionError:
    return events.ExecutionError(
        **_halted_fields(data),
        exception_message=_opt_str(data, "exception_message") or "",
        exception_type=_opt_str(data, "exception_type") or "",
        traceback=_str_tuple(data, "traceback"),
        current_inputs=_mapping(data, "current_inputs"),
        current_outputs=_str_tuple(data, "current_outputs"),
    )


def _execution_interrupted(data: Mapping[str, Any]) -> events.ExecutionInterrupted:
    return events.ExecutionInterrupted(**_halted_fields(data))


def _feature_flags(data: Mapping[str, Any]) -> events.FeatureFlags:
    return events.FeatureFlags(flags=dict(data))


_BUILDERS: dict[str, Callable[[Mapping[str, Any]], events.Event]] = {
    "status": _status,
    "execution_start": _execution_start,
    "execution_cached": _execution_cached,
    "executing": _executing,
    "progress": _progress,
    "progress_state": _progress_state,
    "executed": _executed,
    "execution_success": _execution_success,
    "execution_error": _execution_error,
    "execution_interrupted": _execution_interrupted,
    "feature_flags": _feature_flags,
}

KNOWN_TEXT_TYPES: frozenset[str] = frozenset(_BUILDERS)


# -- binary -----------------------------------------------------------------------


def _u32(frame: bytes, offset: int, what: str) -> int:
    if len(frame) < offset + 4:
        raise EventParseError(f"binary frame too short for {what}")
    return _U32.unpack_from(frame, offset)[0]


def _parse_binary(frame: bytes) -> events.Event:
    event_type = _u32(frame, 0, "its event type")
    if event_type == events.PREVIEW_IMAGE:
        code = _u32(frame, 4, "the image format")
        # An unknown format code still carries an image; keep the bytes.
        mime = _IMAGE_FORMATS.get(code, "application/octet-stream")
        return events.PreviewImage(frame_type=event_type, mime_type=mime, image=frame[8:])
    if event_type == events.PROGRESS_TEXT:
        length = _u32(frame, 4, "the node id length")
        if len(frame) < 8 + length:
            raise EventParseError("text frame shorter than its node id")
        return events.ProgressText(
            node_id=_utf8(frame[8 : 8 + length], "node id"),
            text=_utf8(frame[8 + length :], "text"),
        )
    if event_type == events.PREVIEW_IMAGE_WITH_METADATA:
        return _preview_with_metadata(frame)
    return events.UnknownEvent(type=f"binary:{event_type}", data=frame[4:])


def _utf8(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise EventParseError(f"{what} is not UTF-8") from None


def _preview_with_metadata(frame: bytes) -> events.PreviewImage:
    length = _u32(frame, 4, "the metadata length")
    if len(frame) < 8 + length:
        raise EventParseError("preview frame shorter than its metadata")
    try:
        metadata = json.loads(frame[8 : 8 + length])
    except (ValueError, RecursionError):
        raise EventParseError("preview metadata is not JSON") from None
    if not isinstance(metadata, Mapping):
        raise EventParseError("preview metadata is not an object")
    mime = _opt_str(metadata, "image_type")
    if mime is None:
        raise _fail("image_type", "a string")
    return events.PreviewImage(
        frame_type=events.PREVIEW_IMAGE_WITH_METADATA,
        mime_type=mime,
        image=frame[8 + length :],
        prompt_id=_opt_str(metadata, "prompt_id"),
        node_id=_opt_str(metadata, "node_id"),
        display_node_id=_opt_str(metadata, "display_node_id"),
        parent_node_id=_opt_str(metadata, "parent_node_id"),
        real_node_id=_opt_str(metadata, "real_node_id"),
    )
