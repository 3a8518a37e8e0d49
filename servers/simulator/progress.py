"""Per-prompt progress: the `progress_state` snapshots and ProgressBar updates.

Mirrors ComfyUI's ProgressRegistry + WebUIProgressHandler and the ProgressBar
hook in main.py, including their message order for previews: a client that
negotiated `supports_preview_metadata` gets `progress_state`, the type-4 frame,
then `progress`; any other client gets `progress_state`, `progress`, then the
legacy type-1 frame.
"""

from __future__ import annotations

from typing import Any

from servers.simulator import frames
from servers.simulator.hub import Hub, Preview


class ProgressRegistry:
    def __init__(self, hub: Hub, prompt_id: str, client_id: str | None):
        self.hub = hub
        self.prompt_id = prompt_id
        self.client_id = client_id
        self.nodes: dict[str, dict[str, Any]] = {}

    def _entry(self, node_id: str) -> dict[str, Any]:
        # A node first seen at finish (a cached output) gets ints 1/1, as observed.
        return self.nodes.setdefault(node_id, {"value": 0, "max": 1, "state": "pending"})

    def start(self, node_id: str) -> None:
        entry = self._entry(node_id)
        entry.update(state="running", value=0.0, max=1.0)
        self._send()

    def update(self, node_id: str, value: float, total: float, preview: Preview | None) -> None:
        entry = self._entry(node_id)
        entry.update(state="running", value=value, max=total)
        self._send()
        if preview is not None and self.hub.supports_preview_metadata(self.client_id):
            self.hub.send_sync(frames.PREVIEW_IMAGE_WITH_METADATA, preview, self.client_id)

    def finish(self, node_id: str) -> None:
        entry = self._entry(node_id)
        entry.update(state="finished", value=entry["max"])
        self._send()

    def _send(self) -> None:
        nodes = {
            node_id: {
                "value": entry["value"],
                "max": entry["max"],
                "state": entry["state"],
                "node_id": node_id,
                "prompt_id": self.prompt_id,
                "display_node_id": node_id,
                "parent_node_id": None,
                "real_node_id": node_id,
            }
            for node_id, entry in self.nodes.items()
            if entry["state"] != "pending"
        }
        self.hub.send_sync(
            "progress_state", {"prompt_id": self.prompt_id, "nodes": nodes}, self.client_id
        )

    def progress_bar(
        self, node_id: str, value: float, total: float, preview: tuple[str, bytes] | None
    ) -> None:
        """ComfyUI's ProgressBar hook (the interrupt check is the caller's)."""
        wrapped = None
        if preview is not None:
            image_format, image = preview
            metadata = {
                "node_id": node_id,
                "prompt_id": self.prompt_id,
                "display_node_id": node_id,
                "parent_node_id": None,
                "real_node_id": node_id,
                "image_type": frames.MIME_TYPES[image_format],
            }
            wrapped = Preview(image_format, image, metadata)
        self.update(node_id, value, total, wrapped)
        self.hub.send_sync(
            "progress",
            {"value": value, "max": total, "prompt_id": self.prompt_id, "node": node_id},
            self.client_id,
        )
        if wrapped is not None and not self.hub.supports_preview_metadata(self.client_id):
            self.hub.send_sync(frames.PREVIEW_IMAGE, wrapped, self.client_id)
