"""The one error family of the ComfyUI client and event stream.

Every failure says whether it is `permanent`: retrying the same request against
the same server cannot succeed (a rejected prompt, a missing file, a refused
credential). Everything else -- connection errors, timeouts, 5xx, a garbled
response -- is transient, and the caller may retry later or elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class ComfyUIError(Exception):
    """Base of every error raised by `servers.comfyui`."""

    permanent: bool = False

    def __init__(self, message: str, *, url: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.url = url
        self.status = status

    @property
    def retryable(self) -> bool:
        return not self.permanent

    def __str__(self) -> str:
        where = f" ({self.url})" if self.url else ""
        return f"{self.message}{where}"


# -- transient ------------------------------------------------------------------


class ServerUnavailable(ComfyUIError):
    """The server could not be reached: refused, reset, DNS, TLS."""


class ServerTimeout(ServerUnavailable):
    """The server did not answer within the configured timeout."""


class ServerError(ComfyUIError):
    """The server answered 5xx (or 408/429): its fault, maybe temporary."""


class ProtocolError(ComfyUIError):
    """The server answered something that is not ComfyUI's protocol.

    Transient because it is the server's (or a proxy's) fault, not the request's:
    the same prompt may well succeed on another server.
    """


class EventParseError(ProtocolError):
    """A WebSocket frame that is not a valid ComfyUI event.

    The event parser raises nothing else, whatever bytes it is given.
    """


# -- permanent ------------------------------------------------------------------


class RequestRejected(ComfyUIError):
    """A 4xx: the request itself is wrong for this server; retrying cannot help."""

    permanent = True


class BadRequest(RequestRejected):
    """400 outside POST /prompt, e.g. /view with `..` in the file name."""


class Forbidden(RequestRejected):
    """401/403: ComfyUI's Origin check, or the auth of a reverse proxy in front of it."""


class NotFound(RequestRejected):
    """404: a missing output file, or a route this server does not have."""


@dataclass(frozen=True)
class ErrorDetail:
    """One error object of a 400 body (§6): top level or per node."""

    type: str
    message: str
    details: str = ""
    extra_info: Mapping[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.message}: {self.details}" if self.details else self.message


@dataclass(frozen=True)
class NodeErrors:
    """What validation found wrong with one node of a prompt."""

    node_id: str
    class_type: str
    errors: tuple[ErrorDetail, ...]
    dependent_outputs: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"node {self.node_id} ({self.class_type}): " + "; ".join(map(str, self.errors))


class PromptRejected(RequestRejected):
    """POST /prompt answered 400: the graph is invalid on this server. Never retried."""

    def __init__(
        self,
        error: ErrorDetail,
        node_errors: Mapping[str, NodeErrors],
        *,
        url: str | None = None,
    ) -> None:
        self.error = error
        self.node_errors = dict(node_errors)
        parts = [f"{error.type}: {error}"] + [str(n) for n in self.node_errors.values()]
        super().__init__("prompt rejected: " + "; ".join(parts), url=url, status=400)

    @property
    def messages_by_node(self) -> dict[str, list[str]]:
        """Human-readable messages per node id, as a task page would show them."""
        return {nid: [str(e) for e in n.errors] for nid, n in self.node_errors.items()}


def _text(value: object) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def parse_error_detail(raw: object) -> ErrorDetail:
    """An `{"type", "message", "details", "extra_info"}` object, leniently.

    Validation bodies vary between ComfyUI versions; a missing field must not
    hide the rest of the server's explanation.
    """
    if not isinstance(raw, Mapping):
        return ErrorDetail(type="unknown", message=_text(raw))
    extra = raw.get("extra_info")
    return ErrorDetail(
        type=_text(raw.get("type")) or "unknown",
        message=_text(raw.get("message")),
        details=_text(raw.get("details")),
        extra_info=extra if isinstance(extra, Mapping) else {},
    )


def parse_node_errors(raw: object) -> dict[str, NodeErrors]:
    """The `node_errors` object of a /prompt answer (400, or 200 with partial outputs)."""
    if not isinstance(raw, Mapping):
        return {}
    result: dict[str, NodeErrors] = {}
    for node_id, entry in raw.items():
        entry = entry if isinstance(entry, Mapping) else {}
        errors = entry.get("errors")
        outputs = entry.get("dependent_outputs")
        result[str(node_id)] = NodeErrors(
            node_id=str(node_id),
            class_type=_text(entry.get("class_type")),
            errors=tuple(parse_error_detail(e) for e in errors) if isinstance(errors, list) else (),
            dependent_outputs=tuple(str(o) for o in outputs) if isinstance(outputs, list) else (),
        )
    return result


def prompt_rejected_from_body(body: object, *, url: str | None = None) -> PromptRejected | None:
    """The PromptRejected a 400 body describes, or None if it is not a §6 body."""
    if not isinstance(body, Mapping) or not isinstance(body.get("error"), Mapping | str):
        return None
    return PromptRejected(
        parse_error_detail(body["error"]), parse_node_errors(body.get("node_errors")), url=url
    )
