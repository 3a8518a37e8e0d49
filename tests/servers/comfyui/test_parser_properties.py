"""Whatever a socket delivers, the parser returns an event or raises EventParseError."""

from __future__ import annotations

import json
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servers.comfyui import Event, EventParseError, parse_binary, parse_frame, parse_text
from servers.comfyui.parser import KNOWN_TEXT_TYPES, parse_message

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=12,
)

# Field names the parser looks at, so generated data often hits its typed branches.
field_names = st.sampled_from(
    [
        "prompt_id",
        "node",
        "display_node",
        "nodes",
        "value",
        "max",
        "state",
        "status",
        "exec_info",
        "queue_remaining",
        "sid",
        "output",
        "timestamp",
        "executed",
        "traceback",
        "current_inputs",
        "node_id",
        "image_type",
    ]
)
near_miss_data = st.recursive(
    json_values,
    lambda children: st.dictionaries(field_names, children, max_size=6),
    max_leaves=12,
)
messages = st.fixed_dictionaries(
    {
        "type": st.sampled_from(sorted(KNOWN_TEXT_TYPES)) | st.text(max_size=8),
        "data": near_miss_data,
    }
)

# The suite runs beside other work on shared machines: judge correctness, not speed.
robust = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _parses_or_rejects(call, value) -> None:
    try:
        event = call(value)
    except EventParseError:
        return
    assert isinstance(event, Event)


@robust
@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_raise_anything_but_the_parse_error(frame):
    _parses_or_rejects(parse_binary, frame)


@robust
@given(
    st.sampled_from([1, 3, 4, 2, 0, 2**32 - 1]),
    st.integers(min_value=0, max_value=2**32 - 1),
    st.binary(max_size=256),
)
def test_binary_frames_with_plausible_headers_never_raise_anything_else(kind, word, rest):
    _parses_or_rejects(parse_binary, struct.pack(">II", kind, word) + rest)


@robust
@given(st.dictionaries(field_names, json_values, max_size=6), st.binary(max_size=64))
def test_preview_metadata_of_any_shape_never_raises_anything_else(metadata, image):
    raw = json.dumps(metadata).encode()
    _parses_or_rejects(parse_binary, struct.pack(">II", 4, len(raw)) + raw + image)


@robust
@given(st.text(max_size=512))
def test_arbitrary_text_never_raises_anything_but_the_parse_error(text):
    _parses_or_rejects(parse_text, text)


@robust
@given(json_values)
def test_arbitrary_json_never_raises_anything_but_the_parse_error(value):
    _parses_or_rejects(parse_text, json.dumps(value))


@settings(robust, max_examples=500)
@given(messages)
def test_known_types_with_arbitrary_data_never_raise_anything_else(message):
    _parses_or_rejects(parse_message, message)
    _parses_or_rejects(parse_frame, json.dumps(message))
