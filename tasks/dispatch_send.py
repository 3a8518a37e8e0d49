"""Dispatch's network half: upload inputs and POST claimed prompts, concurrently.

No database access here (it runs inside `asyncio.run` from the dispatch job);
`tasks.dispatch` claims before and settles after.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import SuspiciousFileOperation
from django.core.files.storage import default_storage

from servers.clients import client_for
from servers.comfyui import ComfyUIClient, ComfyUIError
from workflows.uploads import foreign_uploads, refusal, upload_inputs

# A template's image parameter puts {"upload": "<storage path>"} into the node
# input (`workflows.uploads`); the file is sent to the chosen server and its returned
# name put there.


@dataclass(frozen=True)
class Claimed:
    """A task claimed for one server: everything its POST needs, no ORM objects."""

    task_id: int
    team_id: int
    prompt_id: str
    graph: dict[str, Any]
    affinity_key: str  # what the server keeps loaded once it runs this prompt
    server_id: int
    server_name: str
    base_url: str
    headers: dict[str, str] = field(default_factory=dict)
    client_id: str = ""

    @property
    def auth_headers(self) -> dict[str, str]:
        return self.headers


@dataclass(frozen=True)
class Outcome:
    claimed: Claimed
    error: BaseException | None = None
    data: dict[str, Any] = field(default_factory=dict)


class UploadRefused(Exception):
    """An input image the task names cannot be sent, and no retry can change that.

    Its message is shown to users (task error, timeline, API): it names a
    storage path of the team's own upload area at most, never a filesystem path.
    """


class MissingUpload(UploadRefused):
    """The team's upload the task names is not in our storage."""


class ForeignUpload(UploadRefused):
    """The task names a file that is not one of its team's uploads: a row written
    before submission checked this, or edited since. Nothing is read or sent."""


async def send_all(claimed: Sequence[Claimed]) -> list[Outcome]:
    """POST every claimed prompt (one HTTP client per server); an Outcome each, in order."""
    clients: dict[int, ComfyUIClient] = {}
    try:
        for claim in claimed:
            if claim.server_id not in clients:
                clients[claim.server_id] = client_for(claim, "submit")
        return list(await asyncio.gather(*(_send(clients[c.server_id], c) for c in claimed)))
    finally:
        for client in clients.values():
            with contextlib.suppress(Exception):
                await client.aclose()


async def _send(client: ComfyUIClient, claim: Claimed) -> Outcome:
    try:
        graph = await _with_uploads(client, claim.graph, claim.team_id)
        receipt = await client.submit(
            graph,
            client_id=claim.client_id or None,
            prompt_id=claim.prompt_id,
            extra_data={"comfyweb_task": claim.task_id},
        )
    except (ComfyUIError, UploadRefused) as error:
        return Outcome(claim, error)
    except Exception as error:  # a bug must fail the task's attempt, not the whole pass
        return Outcome(claim, error)
    return Outcome(claim, data={"number": receipt.number, "prompt_id": receipt.prompt_id})


async def _with_uploads(
    client: ComfyUIClient, graph: dict[str, Any], team_id: int
) -> dict[str, Any]:
    uploads = list(upload_inputs(graph))
    if not uploads:
        return graph
    foreign = foreign_uploads(graph, team_id)
    if foreign:  # checked for every marker before any file is read
        raise ForeignUpload(refusal(foreign))
    graph = copy.deepcopy(graph)
    names: dict[str, str] = {}
    for node_id, input_name, path in uploads:
        if path not in names:
            data = await asyncio.to_thread(_read, path)
            ref = await client.upload_image(data, posixpath.basename(path))
            names[path] = f"{ref.subfolder}/{ref.filename}" if ref.subfolder else ref.filename
        graph[node_id]["inputs"][input_name] = names[path]
    return graph


def _read(path: str) -> bytes:
    try:
        with default_storage.open(path, "rb") as handle:
            return handle.read()
    except (OSError, SuspiciousFileOperation) as error:
        # Not the error's text: it holds the file's path on this machine.
        raise MissingUpload(f"input image {path!r} is missing") from error


async def cleanup(claimed: Sequence[Claimed]) -> None:
    """Best effort: remove prompts that must not run (task canceled, or POST timed out)."""
    for claim in claimed:
        with contextlib.suppress(Exception):
            async with client_for(claim, "cleanup") as client:
                await client.delete_queued([claim.prompt_id])
                await client.interrupt(claim.prompt_id)
