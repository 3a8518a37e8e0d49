"""Collecting a finished task's outputs (A8): the django-q job `collect_outputs`.

The server's history names the files; each is downloaded via /view into Django
storage under a name we generate (`Output.file`'s upload_to), never under the
server's file name or subfolder. What a file is, is decided by opening it with
Pillow, not by its name or the server's say; images get a webp thumbnail.
Only when every output is stored does the task become `completed`.
"""

from __future__ import annotations

import asyncio
import io
import logging
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from asgiref.sync import async_to_sync
from django.core.files import File
from django.core.files.base import ContentFile
from PIL import Image, UnidentifiedImageError

from servers.clients import client_for
from servers.comfyui import FileRef, HistoryEntry, NotFound
from servers.comfyui.responses import file_refs
from servers.requirements import SEED_INPUTS
from tasks import sweep
from tasks.enqueue import wake_dispatch
from tasks.models import Output, Status, Task
from tasks.transitions import transition

logger = logging.getLogger(__name__)

THUMBNAIL_SIZE = (320, 320)
# Pillow format → the content type we store and serve; anything else is opaque bytes.
CONTENT_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
OPAQUE = "application/octet-stream"
# /history is written just before the last message of the prompt; give it a moment.
HISTORY_WAITS = (0.0, 0.2, 0.5, 1.0, 2.0)
Image.MAX_IMAGE_PIXELS = 100_000_000  # refuse decompression bombs from a hostile server


@dataclass(frozen=True)
class Downloaded:
    node_id: str
    ref: FileRef
    path: Path


@dataclass(frozen=True)
class Inspected:
    content_type: str
    width: int | None
    height: int | None
    thumbnail: bytes | None


def collect_outputs(task_id: int) -> int:
    """Job: store every output of a succeeded task, then mark it completed.

    Returns the number of outputs stored. Does nothing for a task that is no
    longer on a server (already completed, canceled, retried elsewhere).
    Queued by `tasks.sweep.request_collection`, and again by the monitor's sweep
    while the task waits for it; a second run of it is harmless (all or nothing).
    """
    task = Task.objects.select_related("server").filter(pk=task_id).first()
    if task is None or task.status not in Status.active() or task.server is None:
        logger.info("collect_outputs: task %s is not running on a server; skipped", task_id)
        return 0
    sweep.collecting(task_id)
    with tempfile.TemporaryDirectory(prefix="comfyweb-outputs-") as folder:
        entry, files = async_to_sync(_fetch)(task, Path(folder))
        if entry is None:
            # Not in history (yet): the reconciler decides what became of it.
            raise RuntimeError(f"prompt {task.prompt_id} of task {task_id} is not in /history")
        if not entry.succeeded:
            logger.warning(
                "collect_outputs: task %s did not succeed (%s)", task_id, entry.status_str
            )
            return 0
        stored: list[Output] = []
        try:
            for item in files:
                stored.append(store_output(task, item))
        except BaseException:
            # All or nothing: a retried job must not find half the outputs stored.
            for output in stored:
                delete_output(output)
            raise
    return _complete(task, stored)


async def _fetch(task: Task, folder: Path) -> tuple[HistoryEntry | None, list[Downloaded]]:
    server = task.server
    async with client_for(server, "outputs") as client:
        entry = None
        for wait in HISTORY_WAITS:
            if wait:
                await asyncio.sleep(wait)
            entry = await client.get_history(task.prompt_id)
            if entry is not None:
                break
        if entry is None or not entry.succeeded:
            return entry, []
        files = []
        for index, (node_id, ref) in enumerate(output_refs(entry.outputs)):
            # Our own name on disk too: the server's name never becomes a path.
            path = folder / f"{index}.download"
            try:
                await client.download(ref, path)
            except NotFound:
                logger.warning("output %r of task %s is gone from the server", ref, task.pk)
                continue
            files.append(Downloaded(node_id=node_id, ref=ref, path=path))
        return entry, files


def output_refs(outputs: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, FileRef]]:
    """(node id, file) for every file of every output node, in node order."""
    return [(node_id, ref) for node_id, output in outputs.items() for ref in file_refs(output)]


def inspect(path: Path) -> Inspected:
    """What the file really is: opened with Pillow, never judged by its name."""
    try:
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            content_type = CONTENT_TYPES.get(image.format or "")
            if content_type is None:
                return Inspected(OPAQUE, None, None, None)
            image.load()
            width, height = image.size
            return Inspected(content_type, width, height, thumbnail(image))
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return Inspected(OPAQUE, None, None, None)


def thumbnail(image: Image.Image) -> bytes | None:
    """A small webp; None for the rare modes Pillow cannot bring to RGB (still an image)."""
    try:
        copy = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    except ValueError:
        return None
    copy.thumbnail(THUMBNAIL_SIZE)
    buffer = io.BytesIO()
    copy.save(buffer, format="WEBP", quality=80)
    return buffer.getvalue()


def display_name(ref: FileRef) -> str:
    """The server's name for display only: its last path segment, no folders.

    Control characters go too: PostgreSQL refuses NUL in text, and none of
    them belongs on a page.
    """
    name = PurePosixPath(ref.filename.replace("\\", "/")).name
    name = "".join(ch for ch in name if ch.isprintable())
    return name.strip(". ")[:255] or "output"


def store_output(task: Task, item: Downloaded) -> Output:
    """Save one downloaded file (and its thumbnail) as an Output of `task`."""
    info = inspect(item.path)
    output = Output(
        task=task,
        team_id=task.team_id,
        original_name=display_name(item.ref),
        content_type=info.content_type,
        width=info.width,
        height=info.height,
        size=item.path.stat().st_size,
        node_id=item.node_id[:64],
        metadata=output_metadata(task, item.node_id),
    )
    # upload_to makes the stored names; the names passed here are ignored.
    with item.path.open("rb") as fh:
        output.file.save("output", File(fh), save=False)
    if info.thumbnail is not None:
        output.thumbnail.save("thumbnail.webp", ContentFile(info.thumbnail), save=False)
    output.save()
    return output


def output_metadata(task: Task, node_id: str) -> dict[str, Any]:
    node = task.graph.get(node_id) if isinstance(task.graph, dict) else None
    return {
        "task_id": task.pk,
        "workflow_version_id": task.workflow_version_id,
        "template_id": task.template_id,
        "params": task.params,
        "seeds": seeds_in(task.graph),
        "server_id": task.server_id,
        "server": task.server.name if task.server else "",
        "prompt_id": task.prompt_id,
        "node_class": node.get("class_type", "") if isinstance(node, dict) else "",
    }


def seeds_in(graph: Mapping[str, Any]) -> dict[str, int]:
    """Literal seed inputs of the graph, by node id (a linked seed is not a number)."""
    seeds = {}
    for node_id, node in graph.items():
        inputs = node.get("inputs") if isinstance(node, Mapping) else None
        if not isinstance(inputs, Mapping):
            continue
        for name in SEED_INPUTS:
            value = inputs.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                seeds[node_id] = value
    return seeds


def _complete(task: Task, stored: list[Output]) -> int:
    done = transition(
        task.pk,
        list(Status.active()),
        Status.COMPLETED,
        message=f"{len(stored)} output{'s' if len(stored) != 1 else ''} stored",
        data={"outputs": [output.pk for output in stored]},
        where={"prompt_id": task.prompt_id},
        progress_fraction=1.0,
        cancel_requested=False,  # a cancel that came too late changed nothing
    )
    if not done:
        # Canceled or retried meanwhile: these files belong to nothing that finished.
        for output in stored:
            delete_output(output)
        return 0
    if task.slot_held:
        # Its slot was still held (the prompt's end went unseen): free now. Usually
        # it was given back when the prompt ended, and dispatch woken then.
        wake_dispatch()
    return len(stored)


def delete_output(output: Output) -> None:
    for field in (output.thumbnail, output.file):
        if field:
            field.delete(save=False)
    output.delete()
