"""ComfyUI protocol: the HTTP client, typed WebSocket events and the event stream.

`client.py` is the only code in ComfyWeb that speaks ComfyUI's HTTP API and
`stream.py` the only code that holds its WebSocket; both raise only the error
family of `errors.py`.
"""

from __future__ import annotations

from .client import ComfyUIClient, Timeouts
from .errors import (
    BadRequest,
    ComfyUIError,
    ErrorDetail,
    EventParseError,
    Forbidden,
    NodeErrors,
    NotFound,
    PromptRejected,
    ProtocolError,
    RequestRejected,
    ServerError,
    ServerTimeout,
    ServerUnavailable,
)
from .events import (
    Connected,
    Disconnected,
    Event,
    Executed,
    Executing,
    ExecutionCached,
    ExecutionError,
    ExecutionInterrupted,
    ExecutionStart,
    ExecutionSuccess,
    FeatureFlags,
    NodeProgress,
    PreviewImage,
    Progress,
    ProgressState,
    ProgressText,
    Reconnected,
    Status,
    UnknownEvent,
    is_prompt_end,
)
from .parser import parse_binary, parse_frame, parse_text
from .responses import FileRef, HistoryEntry, PromptReceipt, QueueItem, QueueState, SystemStats
from .stats import StreamStats
from .stream import EventStream, Subscription, websocket_url

__all__ = [
    "BadRequest",
    "ComfyUIClient",
    "ComfyUIError",
    "Connected",
    "Disconnected",
    "ErrorDetail",
    "Event",
    "EventParseError",
    "EventStream",
    "Executed",
    "Executing",
    "ExecutionCached",
    "ExecutionError",
    "ExecutionInterrupted",
    "ExecutionStart",
    "ExecutionSuccess",
    "FeatureFlags",
    "FileRef",
    "Forbidden",
    "HistoryEntry",
    "NodeErrors",
    "NodeProgress",
    "NotFound",
    "PreviewImage",
    "Progress",
    "ProgressState",
    "ProgressText",
    "PromptReceipt",
    "PromptRejected",
    "ProtocolError",
    "QueueItem",
    "QueueState",
    "Reconnected",
    "RequestRejected",
    "ServerError",
    "ServerTimeout",
    "ServerUnavailable",
    "Status",
    "StreamStats",
    "Subscription",
    "SystemStats",
    "Timeouts",
    "UnknownEvent",
    "is_prompt_end",
    "parse_binary",
    "parse_frame",
    "parse_text",
    "websocket_url",
]
