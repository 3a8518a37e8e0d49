"""Live progress of running tasks (A6): what each task is doing, and how often to say so.

`TaskProgress` folds a prompt's execution events into node-by-node progress
(pure: no database, no clock), and `Coalescer` decides when an update may go
out: at most one per `interval` per key, with one trailing update so the last
state is never lost. The handler uses one coalescer for browsers (10/s) and a
slower one for database writes, so the database holds the latest state shortly
after the socket showed it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from servers.comfyui import Executing, ExecutionCached, Progress, ProgressState

BROWSER_INTERVAL = 0.1  # ≤10 updates/s per task (A6)
DATABASE_INTERVAL = 1.0

type Clock = Callable[[], float]


class Coalescer:
    """Rate limit per key with a trailing edge.

    `offer(key)` answers 0.0 when an update may go out now, the delay after
    which the caller should send the (then latest) state, or None when such a
    trailing send is already due. The caller reports each send with `sent(key)`.
    """

    def __init__(self, interval: float, clock: Clock = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self._last: dict[Hashable, float] = {}
        self._trailing: set[Hashable] = set()

    def offer(self, key: Hashable) -> float | None:
        if key in self._trailing:
            return None
        now = self.clock()
        last = self._last.get(key)
        if last is None or now - last >= self.interval:
            self._last[key] = now
            return 0.0
        self._trailing.add(key)
        return self.interval - (now - last)

    def sent(self, key: Hashable) -> None:
        """A trailing send happened: the window starts again from now."""
        self._trailing.discard(key)
        self._last[key] = self.clock()

    def forget(self, key: Hashable) -> None:
        self._last.pop(key, None)
        self._trailing.discard(key)

    def pending(self, key: Hashable) -> bool:
        return key in self._trailing


def node_title(graph: Mapping[str, Any], node_id: str) -> str:
    """What the editor shows: the node's `_meta.title`, else its class."""
    node = graph.get(node_id)
    if not isinstance(node, Mapping):
        return node_id
    meta = node.get("_meta")
    if isinstance(meta, Mapping) and isinstance(meta.get("title"), str) and meta["title"]:
        return meta["title"]
    return node_class(graph, node_id) or node_id


def node_class(graph: Mapping[str, Any], node_id: str) -> str:
    node = graph.get(node_id)
    kind = node.get("class_type") if isinstance(node, Mapping) else None
    return kind if isinstance(kind, str) else ""


@dataclass
class TaskProgress:
    """One running prompt's progress, folded from its events."""

    task_id: int
    team_id: int
    graph: Mapping[str, Any]
    done: set[str] = field(default_factory=set)
    cached: set[str] = field(default_factory=set)
    node: str = ""
    value: int = 0
    max: int = 0
    # node id → the server's file names it reported (`executed`): outputs known.
    outputs: dict[str, list[str]] = field(default_factory=dict)
    succeeded: bool = False
    ended: bool = False

    @property
    def total(self) -> int:
        return max(1, sum(1 for node in self.graph.values() if isinstance(node, Mapping)))

    @property
    def node_type(self) -> str:
        return node_class(self.graph, self.node) if self.node else ""

    @property
    def node_title(self) -> str:
        return node_title(self.graph, self.node) if self.node else ""

    @property
    def fraction(self) -> float:
        if self.succeeded:
            return 1.0
        step = self.value / self.max if self.max and self.node not in self.done else 0.0
        return min(1.0, (len(self.done) + min(step, 1.0)) / self.total)

    def apply(self, event: object) -> bool:
        """Fold one event in; True if anything visible changed."""
        before = self.key()
        if isinstance(event, ExecutionCached):
            self.cached.update(event.nodes)
            self.done.update(event.nodes)
        elif isinstance(event, Executing) and event.node is not None:
            if self.node and self.node != event.node:
                self.done.add(self.node)  # nodes run one after another
            self.node, self.value, self.max = event.node, 0, 0
        elif isinstance(event, Progress):
            if event.node and event.node != self.node:
                self.node = event.node
            self.value, self.max = int(event.value), int(event.max)
        elif isinstance(event, ProgressState):
            for node_id, state in event.nodes.items():
                if state.state == "finished":
                    self.done.add(node_id)
                elif state.state == "running":
                    self.node = node_id
                    self.value, self.max = int(state.value), int(state.max)
        return self.key() != before

    def record_outputs(self, node_id: str, filenames: list[str]) -> None:
        self.outputs[node_id] = filenames

    def key(self) -> tuple:
        return (self.node, self.value, self.max, len(self.done), self.succeeded)
