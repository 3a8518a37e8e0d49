"""Upload markers: which stored files a task may send to a ComfyUI server.

A template's image parameter is stored under its team's upload area,
uploads/team-<id>/<generated name> (`SubmitForm.store_uploads`), and put on the
node input as the marker {"upload": "<storage path>"}; dispatch reads that file
from our storage and uploads it to the chosen server (`tasks.dispatch_send`).

The marker is user input (an API graph, a template parameter, a workflow's
graph), and the file it names is sent to the server and comes back as the
task's output. So a marker may name only a file directly in the task's own
team's upload area: never another team's uploads, outputs, an absolute path,
`..`, or anything else in or outside storage. Names there are flat and
generated, so anything else is refused, not normalised. Submission refuses such
a graph (`require_own_uploads`, a 400); dispatch checks again (`is_own_upload`)
for rows written before the check or edited since.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from django.core.exceptions import ValidationError

UPLOAD_KEY = "upload"


def upload_area(team_id: int) -> str:
    """The storage folder of a team's uploaded input images, with its trailing slash."""
    return f"uploads/team-{team_id}/"


def is_own_upload(path: str, team_id: int) -> bool:
    """Whether a marker's path names a file directly in the team's upload area."""
    area = upload_area(team_id)
    if not isinstance(path, str) or not path.startswith(area):
        return False
    name = path[len(area) :]
    return name not in {"", ".", ".."} and not any(c in name for c in "/\\\x00")


def upload_inputs(graph: Mapping[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(node id, input name, storage path) of every input that holds a marker."""
    for node_id, node in graph.items():
        inputs = node.get("inputs") if isinstance(node, Mapping) else None
        if not isinstance(inputs, Mapping):
            continue
        for name, value in inputs.items():
            if (
                isinstance(value, Mapping)
                and set(value) == {UPLOAD_KEY}
                and isinstance(value[UPLOAD_KEY], str)
            ):
                yield str(node_id), str(name), value[UPLOAD_KEY]


def foreign_uploads(graph: Mapping[str, Any], team_id: int) -> list[tuple[str, str]]:
    """(node id, input name) of every marker that is not one of the team's uploads."""
    return [
        (node_id, name)
        for node_id, name, path in upload_inputs(graph)
        if not is_own_upload(path, team_id)
    ]


def refusal(inputs: Iterable[tuple[str, str]]) -> str:
    """Why, for users: which inputs, never the path (it may be a server's file name)."""
    named = ", ".join(f"node {node_id} input {name}" for node_id, name in inputs)
    return (
        f"{named}: an image upload may only name an image uploaded for this team "
        "(uploads/team-<id>/…), not another team's file, an output or any other path."
    )


class ForbiddenUpload(ValidationError):
    """Submission refused: a graph's upload marker names a file not of the team's uploads."""

    def __init__(self, inputs: Iterable[tuple[str, str]]) -> None:
        super().__init__(refusal(inputs), code="forbidden_upload")


def require_own_uploads(graphs: Iterable[Mapping[str, Any]], team_id: int) -> None:
    """Raise ForbiddenUpload unless every marker of every graph is the team's own upload."""
    for graph in graphs:
        foreign = foreign_uploads(graph, team_id)
        if foreign:
            raise ForbiddenUpload(foreign)
