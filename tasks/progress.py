"""Live progress of running tasks (A6): what each task is doing, and how often to say so.

`TaskProgress` folds a prompt's execution events into node-by-node progress
(pure: no database, no clock), and `Coalescer` decides when an update may go
out: at most one per `interval` per key, with one trailing update so the last
state is never lost. The handler uses one coalescer for browsers (10/s) and a
slower one for database writes, so the database holds the latest state shortly
after the socket showed it.

How far a task is has one definition, `Numbers` (every display — task page,
list row, API, socket and event-stream payloads — derives its percentage and
its "step x/y" from it):

    fraction = (nodes done + current node's value / max) / nodes in the graph

"Nodes done" counts nodes that finished or were cached; the current node's
steps (a sampler's 38/150) count only while that node runs; a task that
succeeded is 1. The percentage is of the whole graph, and the step is of the
current node, so they are always shown together with the node's place in the
graph: "node 2 of 3 · step 38/150 · 41 % overall" — never "41 %" beside a bare
"step 38/150", which reads as a contradiction.
"""

from __future__ import annotations

import math
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
        now = self.clock()
        last = self._last.get(key)
        if key in self._trailing:
            if last is not None and now - last < self.interval:
                return None
            # The trailing send is overdue: its timer has not run (the caller's loop is
            # busy with a burst of events). Send now; the caller drops that timer.
            self._trailing.discard(key)
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


def graph_size(graph: Mapping[str, Any]) -> int:
    """Nodes in an API-format graph (at least 1, so a fraction never divides by 0)."""
    return max(1, sum(1 for node in graph.values() if isinstance(node, Mapping)))


@dataclass(frozen=True)
class Numbers:
    """How far one task is: the one definition of its progress (see the module doc)."""

    nodes_done: int
    nodes_total: int
    value: int = 0  # the current node's steps, 0/0 when it reports none
    max: int = 0
    complete: bool = False

    @property
    def fraction(self) -> float:
        if self.complete:
            return 1.0
        total = max(1, self.nodes_total)
        step = min(self.value / self.max, 1.0) if self.max else 0.0
        return min(1.0, (min(self.nodes_done, total) + step) / total)

    @property
    def percent(self) -> int:
        """Whole percent, rounded down: 100 only once the task has succeeded."""
        return 100 if self.complete else min(99, math.floor(self.fraction * 100))

    @property
    def node_number(self) -> int:
        """The place of the running node: 1 while the first runs, `nodes_total` at most."""
        return min(self.nodes_done + 1, max(1, self.nodes_total))

    def summary(self, *, running: bool) -> str:
        """What every display says, e.g. "node 2 of 3 · step 38/150 · 41 % overall"."""
        parts = []
        if running and not self.complete:
            parts.append(f"node {self.node_number} of {max(1, self.nodes_total)}")
            if self.max:
                parts.append(f"step {self.value}/{self.max}")
        parts.append(f"{self.percent} % overall")
        return " · ".join(parts)


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
        return graph_size(self.graph)

    @property
    def node_type(self) -> str:
        return node_class(self.graph, self.node) if self.node else ""

    @property
    def node_title(self) -> str:
        return node_title(self.graph, self.node) if self.node else ""

    def numbers(self) -> Numbers:
        # The current node's steps count only while it runs: once it is done,
        # it is in `done` and its steps would count it twice.
        running = self.node not in self.done
        return Numbers(
            nodes_done=len(self.done),
            nodes_total=self.total,
            value=self.value if running else 0,
            max=self.max if running else 0,
            complete=self.succeeded,
        )

    @property
    def fraction(self) -> float:
        return self.numbers().fraction

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
