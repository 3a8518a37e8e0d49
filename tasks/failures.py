"""What becomes of a task that failed, by the class of its failure (issue 18 item 4).

`tasks.error_classes` names the class; this module decides and acts, through
`tasks.transitions` (`transition` to fail at once, `retry_or_fail` to retry on
the shared backoff until `max_attempts`). Every failure sets `Task.error_class`
and leaves a timeline entry whose data holds `class` and `decision`.

- `validation`: not retried, the graph is wrong and would be refused everywhere;
- `missing_model`: what the server lacks is taken off its cached capabilities
  (dispatch stops choosing it for that); retried while another enabled server
  lists it, else not retried;
- `out_of_memory`: `POST /free` (unload models, free memory) to the server, then
  retried: servers with more free VRAM preferred, the same one (freed) otherwise;
- `node_error`: not retried, a node's own exception repeats with the same graph;
- `server_lost`: retried, another server preferred;
- `interrupted`: not retried.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from servers.clients import client_for
from servers.comfyui import ComfyUIError, PromptRejected
from servers.models import Server, ServerState
from servers.requirements import has_model, model_index
from tasks.error_classes import ErrorClass, Missing, of_exception, of_rejection
from tasks.models import Status
from tasks.transitions import retry_or_fail, transition

logger = logging.getLogger("tasks.failures")

RETRY_ELSEWHERE = "retrying, another server preferred"
NOT_RETRIED = {
    ErrorClass.VALIDATION: "not retried: the graph is invalid and would be refused by any server",
    ErrorClass.NODE_ERROR: (
        "not retried: a node's own exception repeats with the same graph on any server"
    ),
    ErrorClass.INTERRUPTED: "not retried: interrupted",
}


def fail(
    task_id: int,
    error_class: ErrorClass,
    *,
    message: str,
    where: Mapping[str, Any],
    data: Mapping[str, Any] | None = None,
    decision: str = "",
    **fields: Any,
) -> bool:
    """Fail the task at once (its attempt in `where`), with its class and why not retried."""
    decision = decision or NOT_RETRIED[error_class]
    return transition(
        task_id,
        Status.active(),
        Status.FAILED,
        message=f"{message} — {error_class}, {decision}",
        data={**(data or {}), "class": str(error_class), "decision": decision},
        where=where,
        error_class=str(error_class),
        **fields,
    )


# -- POST /prompt refused -------------------------------------------------------------


def prompt_rejected(
    task_id: int, prompt_id: str, server_id: int, server_name: str, error: PromptRejected
) -> str | None:
    """A 400 from /prompt: `validation` fails; `missing_model` retries where it is."""
    error_class, missing = of_rejection(error)
    by_node = error.messages_by_node
    lines = [f"{error.error.type}: {error.error}"] + [
        f"node {node}: {message}" for node, messages in by_node.items() for message in messages
    ]
    fields = {
        "error_type": error.error.type or "prompt_rejected",
        "error_message": "\n".join(lines),
        "error_node": next(iter(by_node), ""),
    }
    data = {"node_errors": by_node, "error": error.error.type, "server": server_id}
    where = {"prompt_id": prompt_id}
    if error_class is ErrorClass.VALIDATION:
        moved = fail(
            task_id,
            error_class,
            message=f"rejected by {server_name}",
            where=where,
            data=data,
            **fields,
        )
        return Status.FAILED if moved else None
    forget_on_server(server_id, missing)
    wanted = ", ".join(missing.names())
    holders = servers_with(missing, excluding=server_id)
    if not holders:
        moved = fail(
            task_id,
            error_class,
            message=f"{server_name} lacks {wanted}",
            where=where,
            data={**data, "missing": missing.names()},
            decision=f"not retried: no other enabled server has {wanted}",
            **fields,
        )
        return Status.FAILED if moved else None
    return retry_or_fail(
        task_id,
        Status.active(),
        reason=f"{server_name} lacks {wanted}",
        error_type=fields["error_type"],
        server_id=server_id,
        where=where,
        error_class=str(error_class),
        decision=f"retrying on a server that has {wanted} ({', '.join(sorted(holders))})",
    )


def forget_on_server(server_id: int, missing: Missing) -> None:
    """Take what the server just said it lacks off its cached capabilities, so that
    dispatch stops choosing it for them before the monitor reads them again."""
    with transaction.atomic():
        state = ServerState.objects.select_for_update().filter(server_id=server_id).first()
        if state is None:
            return
        gone = {(folder, name) for folder, name in missing.models}
        state.model_files = {
            folder: [n for n in names if (folder, n) not in gone]
            for folder, names in (state.model_files or {}).items()
        }
        state.node_classes = [c for c in state.node_classes or [] if c not in missing.node_classes]
        state.save(update_fields=["model_files", "node_classes"])


def servers_with(missing: Missing, *, excluding: int) -> list[str]:
    """Names of the other enabled servers whose last-read capabilities have all of it."""
    names = []
    rows = ServerState.objects.filter(server__enabled=True, capabilities_at__isnull=False).exclude(
        server_id=excluding
    )
    for state in rows.select_related("server"):
        models = model_index(state.model_files or {})
        classes = set(state.node_classes or [])
        if all(has_model(models, f, n) for f, n in missing.models) and classes.issuperset(
            missing.node_classes
        ):
            names.append(state.server.name)
    return names


# -- a node raised --------------------------------------------------------------------


@dataclass(frozen=True)
class NodeFailure:
    """An `execution_error` (from the event stream, or a history entry)."""

    prompt_id: str
    server_id: int
    node_id: str
    node_type: str
    exception_type: str
    exception_message: str
    traceback: Sequence[str] = ()

    @property
    def error_class(self) -> ErrorClass:
        return of_exception(self.exception_type, self.exception_message)


def node_failed(task_id: int, failure: NodeFailure, **fields: Any) -> str | None:
    """Fail a `node_error`; retry an `out_of_memory` (its server freed first by the
    caller: `free_memory`). `fields` are further Task fields for a failed task."""
    message = failure.exception_message.strip()
    summary = (
        f"{failure.node_type or 'A node'} (node {failure.node_id}) raised "
        f"{failure.exception_type or 'an error'}: {message}"
    )
    error_type = (failure.exception_type or "ExecutionError")[:100]
    where = {"prompt_id": failure.prompt_id}
    if failure.error_class is ErrorClass.OUT_OF_MEMORY:
        decision, avoid = _out_of_memory_plan(failure.server_id)
        return retry_or_fail(
            task_id,
            Status.active(),
            reason=summary,
            error_type=error_type,
            server_id=failure.server_id,
            where=where,
            error_class=str(ErrorClass.OUT_OF_MEMORY),
            decision=decision,
            avoid_servers=avoid,
        )
    moved = fail(
        task_id,
        ErrorClass.NODE_ERROR,
        message=summary,
        where=where,
        data={
            "node_id": failure.node_id,
            "node_type": failure.node_type,
            "exception_type": failure.exception_type,
            "traceback": list(failure.traceback)[-20:],
        },
        error_type=error_type,
        error_message=message,
        error_node=(failure.node_id or "")[:64],
        **fields,
    )
    return Status.FAILED if moved else None


def _out_of_memory_plan(server_id: int) -> tuple[str, list[int]]:
    """Where an out-of-memory retry should go: (decision, servers to prefer others to).

    Servers with more free VRAM than the one that ran out (as last read from
    `/system_stats`) are preferred; the rest are avoided like the failed one, which
    dispatch still uses, after its `/free`, when nothing else can take the task.
    """
    states = list(
        ServerState.objects.filter(server__enabled=True).values_list(
            "server_id", "server__name", "vram_free"
        )
    )
    had = next((free for sid, _n, free in states if sid == server_id), None)
    roomier = [
        (sid, name)
        for sid, name, free in states
        if sid != server_id and free is not None and (had is None or free > had)
    ]
    here = next((name for sid, name, _f in states if sid == server_id), "its server")
    if not roomier:
        return f"retrying on {here} after /free (no server has more free VRAM)", []
    preferred = {sid for sid, _n in roomier}
    avoid = [sid for sid, _n, _f in states if sid not in preferred and sid != server_id]
    names = ", ".join(sorted(name for _s, name in roomier))
    decision = (
        f"retrying on a server with more free VRAM than {here} ({names}), or on it after /free"
    )
    return decision, avoid


async def free_memory(server: Server) -> bool:
    """POST /free (unload models, free memory) to the server; False if it did not answer.

    Best effort: ComfyUI applies it once its worker is idle, before its next prompt.
    """
    try:
        async with client_for(server, "cleanup") as client:
            await client.free(unload_models=True, free_memory=True)
    except ComfyUIError as error:
        logger.warning("could not free memory on %s: %s", server.name, error)
        return False
    return True
