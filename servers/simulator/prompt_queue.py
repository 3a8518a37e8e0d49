"""ComfyUI's PromptQueue: a binary heap of 5-element items plus the running set.

Items are `[number, prompt_id, prompt, extra_data, outputs_to_execute]`. The
heap is a plain `heapq` list so GET /queue shows pending items in heap array
order, not execution order, exactly like the real server (gotcha 5). Every
change calls `on_change` which broadcasts the queue `status`.
"""

from __future__ import annotations

import asyncio
import copy
import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(order=True)
class QueueItem:
    number: float
    prompt_id: str
    prompt: dict[str, Any] = field(compare=False)
    extra_data: dict[str, Any] = field(compare=False)
    outputs: list[str] = field(compare=False)

    def as_list(self) -> list[Any]:
        return [self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs]


class PromptQueue:
    def __init__(self, on_change: Callable[[], None]):
        self._on_change = on_change
        self._heap: list[QueueItem] = []
        self._running: dict[int, QueueItem] = {}
        self._task_counter = 0
        self._wakeup = asyncio.Event()
        # The POST /prompt counter: advanced by every parsed request without an
        # explicit "number", rejected ones included (gotcha 6).
        self.counter = 0
        self.flags: dict[str, bool] = {}

    def next_number(self, request: dict[str, Any]) -> float | int:
        if "number" in request:
            return float(request["number"])
        number = self.counter
        if request.get("front"):
            number = -number
        self.counter += 1
        return number

    def put(self, item: QueueItem) -> None:
        heapq.heappush(self._heap, item)
        self._on_change()
        self._notify()

    async def get(self) -> tuple[QueueItem, int] | None:
        """Wait for an item or a flag; None means "only flags to apply"."""
        while not self._heap and not self.flags:
            self._wakeup.clear()
            await self._wakeup.wait()
        if not self._heap:
            return None
        item = heapq.heappop(self._heap)
        task_id = self._task_counter
        self._task_counter += 1
        self._running[task_id] = copy.deepcopy(item)
        self._on_change()
        return item, task_id

    def task_done(self, task_id: int) -> QueueItem:
        """Remove the running item; the caller writes history, then `on_change`."""
        return self._running.pop(task_id)

    def is_running(self, task_id: int) -> bool:
        return task_id in self._running

    def remaining(self) -> int:
        return len(self._heap) + len(self._running)

    def running(self) -> list[QueueItem]:
        return list(self._running.values())

    def pending(self) -> list[QueueItem]:
        return list(self._heap)

    def wipe(self) -> None:
        self._heap.clear()
        self._on_change()

    def delete(self, prompt_id: str) -> bool:
        for index, item in enumerate(self._heap):
            if item.prompt_id != prompt_id:
                continue
            if len(self._heap) == 1:
                # Real ComfyUI wipes here, which broadcasts once more: deleting
                # the last pending item sends two identical status messages.
                self.wipe()
            else:
                self._heap.pop(index)
                heapq.heapify(self._heap)
            self._on_change()
            return True
        return False

    def set_flag(self, name: str, value: bool) -> None:
        self.flags[name] = value
        self._notify()

    def take_flags(self) -> dict[str, bool]:
        flags, self.flags = self.flags, {}
        return flags

    def _notify(self) -> None:
        self._wakeup.set()
