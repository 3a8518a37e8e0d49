"""What the workflow and template pages share: graph tables and the servers that can run it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.contrib import messages
from django.http import HttpRequest

from workflows import runnable
from workflows.models import WorkflowVersion
from workflows.runnable import ServerVerdict
from workflows.validation import node_order


@dataclass
class InputRow:
    name: str
    value: str
    link_node: str | None = None
    link_output: int | None = None


@dataclass
class NodeRow:
    node_id: str
    class_type: str
    title: str
    inputs: list[InputRow] = field(default_factory=list)


def graph_rows(graph: Mapping[str, Any]) -> list[NodeRow]:
    """The graph as table rows in node-id order; links become '← node 3 output 0'."""
    rows = []
    for node_id, node in sorted(graph.items(), key=lambda kv: node_order(kv[0])):
        node = node if isinstance(node, Mapping) else {}
        title = (
            (node.get("_meta") or {}).get("title", "")
            if isinstance(node.get("_meta"), Mapping)
            else ""
        )
        row = NodeRow(str(node_id), str(node.get("class_type", "?")), title)
        for name, value in (node.get("inputs") or {}).items():
            if isinstance(value, list) and len(value) == 2:
                row.inputs.append(InputRow(name, "", str(value[0]), value[1]))
            else:
                text = value if isinstance(value, str) else json.dumps(value)
                row.inputs.append(InputRow(name, text))
        rows.append(row)
    return rows


def capable_servers(version: WorkflowVersion) -> list[ServerVerdict]:
    """Each enabled server's verdict on this version: can run, cannot run and why, unknown."""
    verdicts = runnable.judge(version.graph).servers
    return sorted(verdicts, key=lambda v: (not v.ok, not v.known, v.name))


def warn_unrunnable(request: HttpRequest, version: WorkflowVersion) -> None:
    """After a save, a warning naming the servers that cannot run the new version.

    Saving is not refused: a workflow may be meant for servers not online yet,
    and the detail page says what each server lacks. Submitting it is refused.
    """
    verdict = runnable.judge(version.graph)
    if verdict.refused:
        messages.warning(request, f"Saved, but it cannot run now. {verdict.message()}")
        return
    for server in verdict.checked:
        if not server.ok:
            messages.warning(request, f"{server.name} cannot run it: {'; '.join(server.reasons)}")
