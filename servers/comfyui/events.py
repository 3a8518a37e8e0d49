"""Typed events: one frozen dataclass per ComfyUI WebSocket message (PROTOCOL.md §3).

`parser.py` builds them from frames; `stream.py` adds the pseudo-events that
describe the connection itself (`Connected`, `Disconnected`, `Reconnected`).
Every event has `prompt_id` (None when the message names no prompt) so routing
needs no per-type knowledge.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .responses import FileRef, file_refs


@dataclass(frozen=True, kw_only=True)
class Event:
    type: ClassVar[str] = "event"
    prompt_id: str | None = None


# -- text messages --------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Status(Event):
    """Queue size changed (broadcast). `sid` only on the one sent at connect."""

    type: ClassVar[str] = "status"
    queue_remaining: int
    sid: str | None = None


@dataclass(frozen=True, kw_only=True)
class ExecutionEvent(Event):
    """What every `execution_*` message carries: its prompt, and when it was sent."""

    prompt_id: str
    timestamp: int | None = None


@dataclass(frozen=True, kw_only=True)
class ExecutionStart(ExecutionEvent):
    type: ClassVar[str] = "execution_start"


@dataclass(frozen=True, kw_only=True)
class ExecutionCached(ExecutionEvent):
    """Nodes whose outputs come from the cache; they get no `executing` of their own."""

    type: ClassVar[str] = "execution_cached"
    nodes: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Executing(Event):
    """A node starts. `node=None` means the prompt is finished (PROTOCOL.md gotcha 2).

    The one sent on reconnect has a node but no prompt_id (gotcha 4).
    """

    type: ClassVar[str] = "executing"
    node: str | None
    display_node: str | None = None

    @property
    def finished(self) -> bool:
        return self.node is None


@dataclass(frozen=True, kw_only=True)
class Progress(Event):
    type: ClassVar[str] = "progress"
    value: float
    max: float
    node: str | None = None


@dataclass(frozen=True, kw_only=True)
class NodeProgress:
    """One node's entry in a `progress_state` snapshot."""

    node_id: str
    state: str  # "running" | "finished" (a node that raised stays "running")
    value: float
    max: float
    display_node_id: str | None = None
    parent_node_id: str | None = None
    real_node_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class ProgressState(Event):
    """Cumulative snapshot of every node of the prompt started so far."""

    type: ClassVar[str] = "progress_state"
    prompt_id: str
    nodes: Mapping[str, NodeProgress] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Executed(Event):
    """A node with UI output finished (also replayed for cached output nodes)."""

    type: ClassVar[str] = "executed"
    node: str
    display_node: str | None = None
    output: Mapping[str, Any] = field(default_factory=dict)

    @property
    def files(self) -> tuple[FileRef, ...]:
        return file_refs(self.output)


@dataclass(frozen=True, kw_only=True)
class ExecutionSuccess(ExecutionEvent):
    type: ClassVar[str] = "execution_success"


@dataclass(frozen=True, kw_only=True)
class ExecutionHalted(ExecutionEvent):
    """What `execution_error` and `execution_interrupted` both say: where the prompt stopped."""

    node_id: str | None = None
    node_type: str | None = None
    executed: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ExecutionError(ExecutionHalted):
    """A node raised. Followed by `status` and `executing(None)`, no success."""

    type: ClassVar[str] = "execution_error"
    exception_message: str = ""
    exception_type: str = ""
    traceback: tuple[str, ...] = ()
    current_inputs: Mapping[str, Any] = field(default_factory=dict)
    current_outputs: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ExecutionInterrupted(ExecutionHalted):
    type: ClassVar[str] = "execution_interrupted"


@dataclass(frozen=True, kw_only=True)
class FeatureFlags(Event):
    """The server's answer to our `feature_flags` first message."""

    type: ClassVar[str] = "feature_flags"
    flags: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class UnknownEvent(Event):
    """A message type we do not model (newer ComfyUI, custom nodes): kept verbatim.

    `type` is the message's own type; binary frames of unknown kind get
    `"binary:<n>"` and their payload as bytes.
    """

    # An instance field here (a ClassVar elsewhere); field() keeps it required.
    type: str = field()  # type: ignore[misc]
    data: Any = None


# -- binary frames --------------------------------------------------------------

PREVIEW_IMAGE = 1
PROGRESS_TEXT = 3
PREVIEW_IMAGE_WITH_METADATA = 4


@dataclass(frozen=True, kw_only=True)
class PreviewImage(Event):
    """Binary frame 1 (legacy) or 4 (with metadata): a preview or websocket-saved image.

    Frame 1 names neither node nor prompt; the stream fills in `prompt_id` from
    the prompt that is executing on this socket.
    """

    type: ClassVar[str] = "preview_image"
    frame_type: int
    mime_type: str
    image: bytes = field(repr=False)
    node_id: str | None = None
    display_node_id: str | None = None
    parent_node_id: str | None = None
    real_node_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class ProgressText(Event):
    """Binary frame 3: a text a node reports while running (prompt filled in by the stream)."""

    type: ClassVar[str] = "progress_text"
    node_id: str
    text: str


# -- the connection itself (made by EventStream, never sent by ComfyUI) ---------


@dataclass(frozen=True, kw_only=True)
class Connected(Event):
    """The first successful connection of a stream."""

    type: ClassVar[str] = "stream.connected"
    url: str


@dataclass(frozen=True, kw_only=True)
class Disconnected(Event):
    """The socket closed or failed; the stream will retry after `retry_in` seconds."""

    type: ClassVar[str] = "stream.disconnected"
    reason: str
    retry_in: float


@dataclass(frozen=True, kw_only=True)
class Reconnected(Event):
    """Connected again after a gap: events may have been missed.

    Callers reconcile from /history and /queue on this (ARCHITECTURE.md, monitor).
    Every listener gets it, so one following a single prompt learns that the
    prompt may have finished during the gap.
    """

    type: ClassVar[str] = "stream.reconnected"
    url: str
    downtime: float
    reconnects: int


def is_prompt_end(event: Event) -> bool:
    """True for the last message ComfyUI sends to the submitting client for a prompt."""
    return isinstance(event, Executing) and event.node is None and event.prompt_id is not None
