"""Replays the recorded scenarios against a simulator and records what it does.

The capture has no script, only traffic, so the actions are read off it:
- a `status` carrying `sid` means "this client connected here" (D connects
  without a clientId; a client whose next message is `feature_flags` sent the
  flags first; a label already connected reconnects);
- a client that is not there at the end closes after its last message;
- every `http` record is a request, replayed with the ids the simulator chose.
Before each action the replay waits until every client has received as many
messages as it had in the capture before that moment, and the simulator's work
waits (`SimulatorConfig.pace`) until the replay has done every action the
capture shows before the next message that work would send. So the actions
land at the same point of each run (an interrupt after the second progress, a
queue cleared between two steps, a reconnect mid-run) however busy the machine
is, without sleeping.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import io
import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
from PIL import Image
from websockets.asyncio.client import ClientConnection, connect

from servers.simulator import SimulatedComfyUI

from . import capture

# How long one action waits for the messages it expects before going ahead
# anyway (the comparison then reports the difference). A guard, not a pace.
WAIT_GUARD = 10.0


class IdMap:
    """Capture ids (prompt ids, temp file names) ↔ the ones the simulator chose."""

    def __init__(self) -> None:
        self.to_sim: dict[str, str] = {}
        self.to_cap: dict[str, str] = {}

    def learn(self, cap: Any, sim: Any, key: str | None = None) -> None:
        if isinstance(cap, dict) and isinstance(sim, dict):
            for cap_key, cap_value in cap.items():
                sim_key = self.to_sim.get(cap_key, cap_key)
                if sim_key in sim:
                    self.learn(cap_value, sim[sim_key], cap_key)
        elif isinstance(cap, list) and isinstance(sim, list):
            for cap_item, sim_item in zip(cap, sim, strict=False):
                self.learn(cap_item, sim_item, key)
        elif key in ("prompt_id", "filename") and isinstance(cap, str) and isinstance(sim, str):
            self.to_sim[cap] = sim
            self.to_cap[sim] = cap

    def apply(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.to_sim.get(value, value)
        if isinstance(value, list):
            return [self.apply(v) for v in value]
        if isinstance(value, dict):
            return {self.apply(k): self.apply(v) for k, v in value.items()}
        return value

    def apply_path(self, path: str) -> str:
        for cap, sim in self.to_sim.items():
            if cap != sim and cap in path:
                path = path.replace(cap, sim)
        return path


@dataclass
class Observed:
    ws: dict[str, dict[str, list[dict[str, Any]]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )
    http: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    problems: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    ids: IdMap = field(default_factory=IdMap)


@dataclass(order=True)
class _Action:
    t: float
    seq: int
    kind: str = field(compare=False)
    payload: Any = field(compare=False)


def _is_generated_sid(sid: str) -> bool:
    return len(sid) == 32 and all(c in "0123456789abcdef" for c in sid)


def build_timeline() -> list[_Action]:
    records = capture.records()
    ws_by_label: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if record["kind"] == "ws":
            ws_by_label[record["client"]].append(record)
    last_scenario_with_ws = next(r["scenario"] for r in reversed(records) if r["kind"] == "ws")
    alive = {
        r["client"] for r in records if r["kind"] == "ws" and r["scenario"] == last_scenario_with_ws
    }
    actions: list[_Action] = []
    for seq, record in enumerate(records, start=1):
        if record["kind"] == "scenario":
            actions.append(_Action(record["t"], seq, "scenario", record["scenario"]))
        elif record["kind"] == "http":
            actions.append(_Action(record["t"], seq, "http", record))
        elif record["kind"] == "ws" and record["frame"] == "text":
            message = record["msg"]
            if message["type"] == "status" and "sid" in message["data"]:
                label = record["client"]
                own = ws_by_label[label]
                index = own.index(record)
                flags = (
                    index + 1 < len(own)
                    and own[index + 1]["frame"] == "text"
                    and own[index + 1]["msg"]["type"] == "feature_flags"
                )
                sid = message["data"]["sid"]
                client_id = None if _is_generated_sid(sid) else sid
                actions.append(_Action(record["t"], seq, "connect", (label, client_id, flags)))
    for label, own in ws_by_label.items():
        if label not in alive:
            actions.append(_Action(own[-1]["t"] + 1e-6, 0, "close", label))
    end = max(r["t"] for r in records) + 1.0
    actions.append(_Action(end, 0, "close_all", None))
    return sorted(actions)


def _sid_of(message: Any) -> str | None:
    """The client id a `status` message on connect announces, if this is one."""
    if not isinstance(message, dict) or message.get("type") != "status":
        return None
    data = message.get("data")
    sid = data.get("sid") if isinstance(data, dict) else None
    return sid if isinstance(sid, str) else None


def _upload_bytes(size: int) -> bytes:
    # The capture uploaded a 507-byte PNG and then "different bytes, same name"
    # of 508: the same picture with one extra trailing byte.
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (0, 128, 255)).save(buffer, format="PNG")
    data = buffer.getvalue()
    return data + b"\0" * max(0, size - 507)


class Replay:
    def __init__(self, sim: SimulatedComfyUI, *, late: float = 0.0):
        """`late`: seconds every request to /interrupt or /queue is held back, as on
        a machine too busy to send it when the capture did (0: as soon as due)."""
        self.sim = sim
        self.late = late
        self.observed = Observed()
        self.scenario = "(before)"
        self.sockets: dict[str, ClientConnection] = {}
        self.readers: list[asyncio.Task[None]] = []
        self.received: dict[str, int] = defaultdict(int)
        self.arrival = asyncio.Event()
        # Set whenever a message arrives or an action is done (what `pace` waits on).
        self.changed = asyncio.Event()
        # The capture time of the next action not done yet: every action before it is.
        self.next_action_t = float("-inf")
        # Client id -> label of the socket that holds it now (from its first status).
        self.label_of: dict[str, str] = {}
        self.expected_times: dict[str, list[float]] = defaultdict(list)
        for record in capture.records():
            if record["kind"] == "ws":
                self.expected_times[record["client"]].append(record["t"])

    async def run(self) -> Observed:
        timeline = build_timeline()
        async with httpx.AsyncClient(base_url=self.sim.base_url, timeout=30) as http:
            for index, action in enumerate(timeline):
                self.next_action_t = action.t
                await self._catch_up(action.t)
                await self._do(action, http)
                following = timeline[index + 1 : index + 2]
                self.next_action_t = following[0].t if following else float("inf")
                self.changed.set()
        for task in self.readers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return self.observed

    async def _catch_up(self, t: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_GUARD
        while True:
            behind = {
                label: bisect.bisect_left(times, t) - self.received[label]
                for label, times in self.expected_times.items()
            }
            behind = {label: n for label, n in behind.items() if n > 0}
            if not behind:
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                self.observed.problems[self.scenario].append(
                    f"at t={t}: still waiting for messages {behind}"
                )
                # Count them as received so later actions do not wait again.
                for label, n in behind.items():
                    self.received[label] += n
                return
            self.arrival.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrival.wait(), remaining)

    async def pace(self, client_id: str | None) -> None:
        """The simulator's `pace`: hold its work until the actions before its next message are done.

        The next message a client gets from it (the executing client, or every
        socket for a prompt sent without a client id) is the one after the
        frames written to it so far; in the capture it came at some time T, and
        every action recorded before T (a POST /interrupt, a queue clear) must
        have happened before the work that produces it goes on.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_GUARD
        while True:
            await self.sim.hub.flushed()
            recipients = [client_id] if client_id else list(self.sim.hub.sockets)
            if all(self._next_message_due(sid) for sid in recipients):
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                return  # a different run than recorded: the comparison will say how
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)

    def _next_message_due(self, sid: str) -> bool:
        """Whether every action recorded before `sid`'s next message has been done."""
        label = self.label_of.get(sid)
        if label is None:
            return True  # not a client of the capture's
        times = self.expected_times[label]
        index = self.sim.hub.sent_to(sid)
        return index >= len(times) or self.next_action_t >= times[index]

    async def _do(self, action: _Action, http: httpx.AsyncClient) -> None:
        if action.kind == "scenario":
            self.scenario = action.payload
        elif action.kind == "connect":
            await self._connect(*action.payload)
        elif action.kind == "close":
            await self._close(action.payload)
        elif action.kind == "close_all":
            for label in list(self.sockets):
                await self._close(label)
        elif action.kind == "http":
            await self._request(http, action.payload)

    async def _connect(self, label: str, client_id: str | None, flags: bool) -> None:
        await self._close(label)
        url = self.sim.ws_url + (f"?clientId={client_id}" if client_id else "")
        ws = await connect(url, max_size=None)
        self.sockets[label] = ws
        if flags:
            await ws.send(
                json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
            )
        self.readers.append(asyncio.create_task(self._read(label, ws)))

    async def _close(self, label: str) -> None:
        ws = self.sockets.pop(label, None)
        if ws is not None:
            await ws.close()

    async def _read(self, label: str, ws: ClientConnection) -> None:
        with contextlib.suppress(Exception):
            async for frame in ws:
                if isinstance(frame, bytes):
                    entry = {"frame": "binary", **capture.describe_binary(frame)}
                else:
                    entry = {"frame": "text", "msg": json.loads(frame)}
                    sid = _sid_of(entry["msg"])
                    if sid:
                        self.label_of[sid] = label
                self.observed.ws[self.scenario][label].append(entry)
                self.received[label] += 1
                self.arrival.set()
                self.changed.set()

    async def _request(self, http: httpx.AsyncClient, record: dict[str, Any]) -> None:
        ids = self.observed.ids
        path = ids.apply_path(record["path"])
        kwargs: dict[str, Any] = {}
        if record.get("req_json") is not None:
            kwargs["json"] = ids.apply(record["req_json"])
        elif "req_raw" in record:
            kwargs["content"] = record["req_raw"].encode()
        elif "req_multipart" in record:
            parts = dict(record["req_multipart"])
            image = parts.pop("image")
            kwargs["files"] = {
                "image": (image["filename"], _upload_bytes(image["bytes"]), "image/png")
            }
            kwargs["data"] = parts
        if self.late and record["path"] in ("/interrupt", "/queue"):
            await asyncio.sleep(self.late)
        response = await http.request(record["method"], path, **kwargs)
        content_type = response.headers.get("content-type", "")
        if content_type.startswith("application/json"):
            body: Any = response.json()
        elif content_type.startswith("text/"):
            body = response.text
        else:
            body = {"_bytes": len(response.content), "_magic_hex": response.content[:8].hex()}
        self.observed.http[self.scenario].append(
            {"status": response.status_code, "content_type": content_type, "body": body}
        )
        if response.status_code == 200:
            ids.learn(record["body"], body)
