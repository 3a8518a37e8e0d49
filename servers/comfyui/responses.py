"""Typed results of ComfyUI's HTTP endpoints, parsed and shape-checked.

Pure functions from decoded JSON to frozen dataclasses; no I/O here (the client
does that). A body of the wrong shape raises `ProtocolError`, so callers never
meet a half-parsed dict deep inside the fleet code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import NodeErrors, ProtocolError, parse_node_errors


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise ProtocolError(f"malformed response: {what}")


def expect_mapping(value: object, what: str) -> Mapping[str, Any]:
    expect(isinstance(value, Mapping), f"{what} is not an object")
    return value  # type: ignore[return-value]


def expect_list(value: object, what: str) -> list[Any]:
    expect(isinstance(value, list), f"{what} is not a list")
    return value  # type: ignore[return-value]


def expect_str_list(value: object, what: str) -> list[str]:
    items = expect_list(value, what)
    expect(all(isinstance(i, str) for i in items), f"{what} is not a list of strings")
    return items


@dataclass(frozen=True)
class FileRef:
    """A file on a ComfyUI server, as /view, /upload/image and `executed` name it."""

    filename: str
    subfolder: str = ""
    type: str = "output"

    @classmethod
    def from_json(cls, raw: object) -> FileRef:
        data = expect_mapping(raw, "file reference")
        name = data.get("filename", data.get("name"))
        expect(isinstance(name, str) and bool(name), "file reference without a filename")
        subfolder = data.get("subfolder") or ""
        kind = data.get("type") or "output"
        expect(isinstance(subfolder, str) and isinstance(kind, str), "file reference fields")
        return cls(filename=name, subfolder=subfolder, type=kind)


def file_refs(output: Mapping[str, Any]) -> tuple[FileRef, ...]:
    """Every file named in one node's UI output (`images`, `gifs`, `audio`, ...).

    Entries that are not file references (e.g. `text` lists) are skipped: the UI
    dict is free-form and custom nodes put anything in it.
    """
    refs: list[FileRef] = []
    for value in output.values():
        if not isinstance(value, list):
            continue
        for item in value:
            if isinstance(item, Mapping) and isinstance(item.get("filename"), str):
                try:
                    refs.append(FileRef.from_json(item))
                except ProtocolError:
                    continue
    return tuple(refs)


@dataclass(frozen=True)
class PromptReceipt:
    """The 200 answer of POST /prompt."""

    prompt_id: str
    number: float
    # Non-empty when some output nodes failed validation and only the others were queued.
    node_errors: Mapping[str, NodeErrors] = field(default_factory=dict)

    @property
    def partially_rejected(self) -> bool:
        return bool(self.node_errors)

    @classmethod
    def from_json(cls, raw: object) -> PromptReceipt:
        data = expect_mapping(raw, "POST /prompt answer")
        prompt_id, number = data.get("prompt_id"), data.get("number")
        expect(isinstance(prompt_id, str), "POST /prompt answer without prompt_id")
        expect(
            isinstance(number, int | float) and not isinstance(number, bool),
            "POST /prompt answer without a numeric number",
        )
        return cls(prompt_id, number, parse_node_errors(data.get("node_errors")))


@dataclass(frozen=True)
class QueueItem:
    """`[number, prompt_id, prompt, extra_data, outputs_to_execute]` of /queue and /history."""

    number: float
    prompt_id: str
    prompt: Mapping[str, Any]
    extra_data: Mapping[str, Any]
    outputs_to_execute: tuple[str, ...]

    @property
    def client_id(self) -> str | None:
        value = self.extra_data.get("client_id")
        return value if isinstance(value, str) else None

    @classmethod
    def from_json(cls, raw: object) -> QueueItem:
        items = expect_list(raw, "queue item")
        expect(len(items) >= 2, "queue item shorter than [number, prompt_id]")
        number, prompt_id = items[0], items[1]
        expect(
            isinstance(number, int | float) and not isinstance(number, bool),
            "queue item number is not a number",
        )
        expect(isinstance(prompt_id, str), "queue item prompt_id is not a string")
        # The three later fields are always present on a real server; tolerate
        # their absence so a trimmed item still yields its identity.
        prompt = items[2] if len(items) > 2 else {}
        extra = items[3] if len(items) > 3 else {}
        outputs = items[4] if len(items) > 4 else []
        return cls(
            number=number,
            prompt_id=prompt_id,
            prompt=expect_mapping(prompt, "queue item prompt"),
            extra_data=expect_mapping(extra, "queue item extra_data"),
            outputs_to_execute=tuple(str(o) for o in expect_list(outputs, "queue item outputs")),
        )


@dataclass(frozen=True)
class QueueState:
    """GET /queue. `pending` keeps the server's (binary-heap) array order."""

    running: tuple[QueueItem, ...]
    pending: tuple[QueueItem, ...]

    @property
    def pending_in_execution_order(self) -> tuple[QueueItem, ...]:
        # ComfyUI pops the smallest number first (PROTOCOL.md gotcha 5).
        return tuple(sorted(self.pending, key=lambda item: item.number))

    @property
    def remaining(self) -> int:
        return len(self.running) + len(self.pending)

    def prompt_ids(self) -> set[str]:
        return {item.prompt_id for item in (*self.running, *self.pending)}

    @classmethod
    def from_json(cls, raw: object) -> QueueState:
        data = expect_mapping(raw, "GET /queue answer")
        running = expect_list(data.get("queue_running"), "queue_running")
        pending = expect_list(data.get("queue_pending"), "queue_pending")
        return cls(
            running=tuple(QueueItem.from_json(i) for i in running),
            pending=tuple(QueueItem.from_json(i) for i in pending),
        )


@dataclass(frozen=True)
class HistoryEntry:
    """One entry of GET /history: a prompt that finished (successfully or not)."""

    prompt_id: str
    item: QueueItem
    outputs: Mapping[str, Mapping[str, Any]]
    status_str: str | None
    completed: bool
    messages: tuple[tuple[str, Mapping[str, Any]], ...]

    @property
    def succeeded(self) -> bool:
        return self.status_str == "success"

    @property
    def interrupted(self) -> bool:
        # Interrupted runs are "error" too; only the last message tells them apart.
        return bool(self.messages) and self.messages[-1][0] == "execution_interrupted"

    @property
    def error(self) -> Mapping[str, Any] | None:
        """The `execution_error` data, if the run failed with an exception."""
        for kind, data in self.messages:
            if kind == "execution_error":
                return data
        return None

    def files(self) -> tuple[FileRef, ...]:
        return tuple(ref for out in self.outputs.values() for ref in file_refs(out))

    @classmethod
    def from_json(cls, prompt_id: str, raw: object) -> HistoryEntry:
        data = expect_mapping(raw, f"history entry {prompt_id}")
        outputs = expect_mapping(data.get("outputs", {}), "history outputs")
        status = data.get("status")
        status = status if isinstance(status, Mapping) else {}
        messages: list[tuple[str, Mapping[str, Any]]] = []
        for message in status.get("messages") or []:
            if isinstance(message, list) and len(message) == 2 and isinstance(message[0], str):
                body = message[1] if isinstance(message[1], Mapping) else {}
                messages.append((message[0], body))
        status_str = status.get("status_str")
        return cls(
            prompt_id=prompt_id,
            item=QueueItem.from_json(data.get("prompt")),
            outputs={
                str(k): expect_mapping(v, f"history output of node {k}") for k, v in outputs.items()
            },
            status_str=status_str if isinstance(status_str, str) else None,
            completed=status.get("completed") is True,
            messages=tuple(messages),
        )


def parse_history(raw: object) -> dict[str, HistoryEntry]:
    """GET /history or /history/{id}: `{prompt_id: entry}` in completion order."""
    data = expect_mapping(raw, "GET /history answer")
    return {str(pid): HistoryEntry.from_json(str(pid), entry) for pid, entry in data.items()}


@dataclass(frozen=True)
class Device:
    name: str
    type: str
    index: int | None
    vram_total: int
    vram_free: int


@dataclass(frozen=True)
class SystemStats:
    """GET /system_stats, with the raw body kept for anything not modelled."""

    comfyui_version: str | None
    python_version: str | None
    ram_total: int | None
    ram_free: int | None
    devices: tuple[Device, ...]
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, raw: object) -> SystemStats:
        data = expect_mapping(raw, "GET /system_stats answer")
        system = expect_mapping(data.get("system"), "system_stats.system")
        devices = []
        for dev in expect_list(data.get("devices", []), "system_stats.devices"):
            dev = expect_mapping(dev, "system_stats device")
            devices.append(
                Device(
                    name=str(dev.get("name", "")),
                    type=str(dev.get("type", "")),
                    index=dev.get("index") if isinstance(dev.get("index"), int) else None,
                    vram_total=_int(dev.get("vram_total")),
                    vram_free=_int(dev.get("vram_free")),
                )
            )
        return cls(
            comfyui_version=_str_or_none(system.get("comfyui_version")),
            python_version=_str_or_none(system.get("python_version")),
            ram_total=_int_or_none(system.get("ram_total")),
            ram_free=_int_or_none(system.get("ram_free")),
            devices=tuple(devices),
            raw=data,
        )


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _int(value: object) -> int:
    return _int_or_none(value) or 0
