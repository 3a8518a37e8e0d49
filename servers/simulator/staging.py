"""Which node runs next: ComfyUI's ExecutionList, without lazy inputs.

Nodes enter `pending` by a depth-first walk from each output (stack order, as
in ComfyUI, so the insertion order matches); cached upstream nodes are not
added at all. Among ready nodes an output node goes first, then a node that
feeds an output directly, then one two steps away ("ux_friendly_pick_node").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)


class ExecutionPlan:
    def __init__(
        self,
        prompt: dict[str, Any],
        is_cached: Callable[[str], bool],
        is_output: Callable[[str], bool],
    ):
        self.prompt = prompt
        self._is_cached = is_cached
        self._is_output = is_output
        self.pending: dict[str, bool] = {}
        self.blocked_by: dict[str, set[str]] = {}
        self.blocking: dict[str, set[str]] = {}

    def add_output(self, node_id: str) -> None:
        stack = [node_id]
        links: list[tuple[str, str]] = []
        while stack:
            current = stack.pop()
            if current in self.pending:
                continue
            self.pending[current] = True
            self.blocked_by.setdefault(current, set())
            self.blocking.setdefault(current, set())
            for value in self.prompt[current].get("inputs", {}).values():
                if _is_link(value) and not self._is_cached(value[0]):
                    stack.append(value[0])
                    links.append((value[0], current))
        for source, target in links:
            self.blocked_by[target].add(source)
            self.blocking.setdefault(source, set()).add(target)

    def empty(self) -> bool:
        return not self.pending

    def pick(self) -> str:
        ready = [n for n in self.pending if not self.blocked_by[n]]
        if not ready:
            raise RuntimeError("Dependency cycle detected")
        for node_id in ready:
            if self._is_output(node_id):
                return node_id
        for node_id in ready:
            if any(self._is_output(b) for b in self.blocking[node_id]):
                return node_id
        for node_id in ready:
            for blocked in self.blocking[node_id]:
                if any(self._is_output(b) for b in self.blocking.get(blocked, ())):
                    return node_id
        return ready[0]

    def complete(self, node_id: str) -> None:
        del self.pending[node_id]
        for target in self.blocking.get(node_id, ()):
            self.blocked_by[target].discard(node_id)
