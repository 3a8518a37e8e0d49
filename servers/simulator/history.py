"""Completed prompts, as GET/POST /history serve them.

A dict in completion order; re-running an existing prompt_id overwrites the
entry in place (it keeps its position, as a dict assignment does in ComfyUI).
"""

from __future__ import annotations

import copy
from typing import Any

MAXIMUM_HISTORY_SIZE = 10000
# Stripped from extra_data before it is stored (ComfyUI's SENSITIVE_EXTRA_DATA_KEYS).
SENSITIVE_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")


class History:
    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Any]] = {}

    def record(
        self,
        item: list[Any],
        *,
        outputs: dict[str, Any],
        meta: dict[str, Any],
        status_str: str,
        completed: bool,
        messages: list[list[Any]],
    ) -> None:
        if len(self._entries) > MAXIMUM_HISTORY_SIZE:
            self._entries.pop(next(iter(self._entries)))
        number, prompt_id, prompt, extra_data, to_execute = item
        extra = {k: v for k, v in extra_data.items() if k not in SENSITIVE_KEYS}
        self._entries[prompt_id] = {
            "prompt": [number, prompt_id, prompt, extra, to_execute],
            "outputs": outputs,
            "status": {"status_str": status_str, "completed": completed, "messages": messages},
            "meta": meta,
        }

    def get(self, prompt_id: str) -> dict[str, Any]:
        if prompt_id not in self._entries:
            return {}
        return {prompt_id: copy.deepcopy(self._entries[prompt_id])}

    def listing(self, max_items: int | None = None, offset: int = -1) -> dict[str, Any]:
        """ComfyUI's get_history: newest `max_items`, still oldest first."""
        if offset < 0 and max_items is not None:
            offset = len(self._entries) - max_items
        out: dict[str, Any] = {}
        for index, key in enumerate(self._entries):
            if index >= offset:
                out[key] = self._entries[key]
                if max_items is not None and len(out) >= max_items:
                    break
        return copy.deepcopy(out)

    def delete(self, prompt_id: str) -> None:
        self._entries.pop(prompt_id, None)

    def clear(self) -> None:
        self._entries.clear()
