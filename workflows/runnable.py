"""Which servers can run a graph, judged from what the monitor last read of them.

The balancer holds back a task that no server has the nodes or models for, and
a server refuses a prompt whose inputs its catalogue rejects; either way work
that no server will ever run would wait forever or fail at dispatch. So before
work is queued (`require_runnable`, called by `tasks.submission`) and on the
workflow page (`judge`), every enabled server whose capabilities are known is
asked, without any network call:

1. the balancer's own test: the node classes and model files it lists;
2. what its `/object_info` makes ComfyUI answer (`workflows.validation.server_answer`:
   required inputs, types, ranges, combo lists, output nodes).

Submission is refused only when every enabled server is known and none can run
the graph, and no capacity outside the fleet could provide it
(`servers.fleet.capacity_for`, the seam for container pools). A server whose
capabilities are not known yet (never reached, just added) may turn out able,
so then the work is accepted and waits with its reason shown.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError

from servers import balancer, catalogues, fleet
from servers.balancer import ServerSnapshot
from servers.requirements import requirements_from_graph, workflow_key_of
from workflows.validation import ServerAnswer, server_answer

# Reasons per server and server names in messages; the API's details carry all.
_REASONS_SHOWN = 5
_NAMES_SHOWN = 8


@dataclass(frozen=True)
class ServerVerdict:
    server_id: int
    name: str
    known: bool  # the monitor has read its node classes and model files
    inputs_checked: bool = False  # ...and its /object_info, so inputs were checked too
    reasons: tuple[str, ...] = ()  # why it cannot run the graph
    skipped: tuple[str, ...] = ()  # it runs the graph but leaves these outputs out
    node_errors: Mapping[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.known and not self.reasons

    def as_json(self) -> dict[str, Any]:
        return {
            "server": self.name,
            "id": self.server_id,
            "known": self.known,
            "inputs_checked": self.inputs_checked,
            "can_run": self.ok,
            "reasons": list(self.reasons),
            "skipped_outputs": list(self.skipped),
            "node_errors": dict(self.node_errors),
        }


@dataclass(frozen=True)
class FleetVerdict:
    servers: tuple[ServerVerdict, ...]  # every enabled server
    # Capacity outside the fleet that could still provide what is missing (#13).
    capacity: tuple[str, ...] = ()

    @property
    def checked(self) -> list[ServerVerdict]:
        return [v for v in self.servers if v.known]

    @property
    def refused(self) -> bool:
        """No server can run it and waiting will not change that: refuse the work."""
        return (
            bool(self.servers)
            and all(v.known for v in self.servers)
            and not any(v.ok for v in self.servers)
            and not self.capacity
        )

    def message(self) -> str:
        checked = _names([v.name for v in self.checked])
        groups: dict[tuple[str, ...], list[str]] = {}
        for verdict in self.checked:
            if not verdict.ok:
                groups.setdefault(verdict.reasons, []).append(verdict.name)
        parts = [f"{_names(names)}: {_shorten(why)}" for why, names in groups.items()]
        return f"No enabled server can run this graph (checked {checked}). " + " — ".join(parts)

    def as_json(self) -> dict[str, Any]:
        return {
            "checked": [v.name for v in self.checked],
            "servers": [v.as_json() for v in self.servers],
            "capacity": list(self.capacity),
        }


# (workflow key, catalogue) -> the catalogue's answer, across views: dispatch asks
# about the same pending tasks pass after pass, and parsed catalogues are shared
# (`servers.catalogues`), so an answer holds until either changes. The catalogue
# object is kept with its answer, so a recycled id() never matches.
_ANSWERS_KEPT = 4096
_answers: OrderedDict[tuple[str, int], tuple[Any, ServerAnswer]] = OrderedDict()
_answers_lock = threading.Lock()


def _remembered_answer(key: str, catalogue: Any) -> ServerAnswer | None:
    with _answers_lock:
        entry = _answers.get((key, id(catalogue)))
        if entry is None or entry[0] is not catalogue:
            return None
        _answers.move_to_end((key, id(catalogue)))
        return entry[1]


def _remember_answer(key: str, catalogue: Any, answer: ServerAnswer) -> None:
    with _answers_lock:
        _answers[(key, id(catalogue))] = (catalogue, answer)
        while len(_answers) > _ANSWERS_KEPT:
            _answers.popitem(last=False)


class Unrunnable(ValidationError):
    """Submission refused: no enabled server can run one of the graphs."""

    def __init__(self, verdict: FleetVerdict) -> None:
        super().__init__(verdict.message(), code="unrunnable")
        self.verdict = verdict


class FleetView:
    """The enabled servers and their catalogues, read once to judge several graphs."""

    def __init__(
        self, servers: Sequence[ServerSnapshot], catalogues_by_id: Mapping[int, Any]
    ) -> None:
        self.servers = servers
        self.catalogues = catalogues_by_id

    @classmethod
    def load(cls) -> FleetView:
        return cls.of(fleet.snapshot())

    @classmethod
    def of(cls, snapshot: Iterable[ServerSnapshot]) -> FleetView:
        """The view of a fleet snapshot already read (dispatch's plan reads one a pass)."""
        servers = [s for s in snapshot if s.enabled]
        known = [s.id for s in servers if s.node_classes is not None]
        return cls(servers, catalogues.catalogues_by_server(known) if known else {})

    def judge(self, graph: Mapping[str, Any]) -> FleetVerdict:
        requirements = requirements_from_graph(graph)
        # Servers that share a catalogue share its parsed copy: validate once per copy.
        answers: dict[int, ServerAnswer] = {}
        verdicts = tuple(
            self._judge_one(server, graph, requirements, answers) for server in self.servers
        )
        verdict = FleetVerdict(verdicts)
        if verdict.refused:
            verdict = FleetVerdict(verdicts, tuple(fleet.capacity_for(requirements)))
        return verdict

    def refusals(self, graph: Mapping[str, Any], workflow_key: str) -> dict[int, str]:
        """Server id -> why its catalogue rejects `graph`, for dispatch's balancer.

        The balancer only knows class and model names; without this it could send
        a prompt to a server that refuses its inputs while another would run it.
        Graphs of one workflow key differ only in seeds (bounded at submission),
        so each (key, catalogue) is validated once, and remembered across views.
        """
        key = workflow_key or workflow_key_of(graph)
        refused: dict[int, str] = {}
        for server_id, catalogue in self.catalogues.items():
            answer = _remembered_answer(key, catalogue)
            if answer is None:
                answer = server_answer(graph, catalogue)
                _remember_answer(key, catalogue, answer)
            if not answer.accepted:
                refused[server_id] = _shorten(answer.reasons)
        return refused

    def _judge_one(
        self, server: ServerSnapshot, graph, requirements, answers: dict[int, ServerAnswer]
    ) -> ServerVerdict:
        if server.node_classes is None:
            return ServerVerdict(server.id, server.name, known=False)
        catalogue = self.catalogues.get(server.id)
        if gaps := balancer.capability_gaps(server, requirements):
            return ServerVerdict(
                server.id, server.name, True, catalogue is not None, reasons=tuple(gaps)
            )
        if catalogue is None:
            return ServerVerdict(server.id, server.name, True, False)
        answer = answers.get(id(catalogue))
        if answer is None:
            answer = answers[id(catalogue)] = server_answer(graph, catalogue)
        return ServerVerdict(
            server.id,
            server.name,
            True,
            True,
            reasons=tuple(answer.reasons),
            skipped=tuple(answer.skipped),
            node_errors=answer.report.node_errors,
        )


def judge(graph: Mapping[str, Any]) -> FleetVerdict:
    """Each enabled server's verdict on `graph`."""
    return FleetView.load().judge(graph)


def require_runnable(graphs: Iterable[Mapping[str, Any]]) -> None:
    """Raise Unrunnable if no enabled server can run one of `graphs`.

    Graphs that differ only in their seeds (a seed sweep, runs of a batch) are
    judged once.
    """
    view: FleetView | None = None
    seen: set[str] = set()
    for graph in graphs:
        key = workflow_key_of(graph)
        if key in seen:
            continue
        seen.add(key)
        view = view or FleetView.load()
        if not view.servers or any(s.node_classes is None for s in view.servers):
            # A server not read yet may turn out able: the work waits, as it says.
            return
        verdict = view.judge(graph)
        if verdict.refused:
            raise Unrunnable(verdict)


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_NAMES_SHOWN])
    rest = len(names) - _NAMES_SHOWN
    return f"{shown} and {rest} more" if rest > 0 else shown


def _shorten(reasons: Sequence[str]) -> str:
    shown = "; ".join(reasons[:_REASONS_SHOWN])
    rest = len(reasons) - _REASONS_SHOWN
    return f"{shown}; and {rest} more" if rest > 0 else shown
