"""Binary WebSocket frame encoding (PROTOCOL.md §3 "Binary frames").

Every frame starts with a 4-byte big-endian event type.
"""

from __future__ import annotations

import json
import struct
from typing import Any

PREVIEW_IMAGE = 1
TEXT = 3
PREVIEW_IMAGE_WITH_METADATA = 4

IMAGE_FORMATS = {"JPEG": 1, "PNG": 2}
MIME_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png"}

SERVER_FEATURES: dict[str, Any] = {"supports_preview_metadata": True, "max_upload_size": 104857600}


def preview_image(image_format: str, image: bytes) -> bytes:
    """Type 1: event, image format (1 JPEG, 2 PNG), image bytes."""
    return struct.pack(">II", PREVIEW_IMAGE, IMAGE_FORMATS[image_format]) + image


def preview_image_with_metadata(metadata: dict[str, Any], image: bytes) -> bytes:
    """Type 4: event, metadata length, metadata JSON, image bytes."""
    encoded = json.dumps(metadata).encode("utf-8")
    return struct.pack(">II", PREVIEW_IMAGE_WITH_METADATA, len(encoded)) + encoded + image


def progress_text(node_id: str, text: str) -> bytes:
    """Type 3: event, node id length, node id, UTF-8 text."""
    node = node_id.encode("utf-8")
    return struct.pack(">II", TEXT, len(node)) + node + text.encode("utf-8")
