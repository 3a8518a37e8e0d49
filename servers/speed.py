"""Measured speed (issue 15): how long a server takes for a workflow's work, learned
from the prompts it ran, so dispatch can place a task where it will finish first.

A task's work is `work_units(graph)`: the sampling steps its nodes take (the
`steps` inputs summed; 1 for a graph without any). What one unit costs depends
on the server and on what the graph does per step — its models, sizes and other
numbers — so durations are learned per (server, `speed_key_of(graph)`): the
graph without seeds, steps and text, which is the same for every run of a
template that only changes its prompt, seed or step count.

Each prompt that ran to success without its sampling nodes served from cache is
one observation (`observe`, from the monitor: ComfyUI's own execution_start and
execution_success timestamps); a server's rate for a key is an exponentially
weighted mean of seconds per unit. Before a server has run a key, its estimate
comes from the servers that have, scaled by configured weights, or from a
default rate scaled by its weight: the weight is a prior, the measurements the
truth (`SpeedTable.seconds`).
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from servers.models import ServerSpeed
from servers.requirements import SEED_INPUTS

# Inputs that count work rather than change what a unit of it costs.
STEP_INPUTS = frozenset({"steps"})
# Weight of the newest observation in the running mean.
ALPHA = 0.3
# Seconds per unit on a server of weight 1 when nothing was measured yet.
DEFAULT_SECONDS_PER_UNIT = 1.0
# Durations outside this range are clock trouble, not speed.
MAX_SECONDS = 24 * 3600.0
# A running prompt past its predicted time still counts this share of it.
OVERRUN_SHARE = 0.1


def work_units(graph: Mapping[str, Any]) -> float:
    """The sampling steps a graph takes (at least 1)."""
    steps = 0
    for node in graph.values():
        inputs = node.get("inputs") if isinstance(node, Mapping) else None
        if not isinstance(inputs, Mapping):
            continue
        for name in STEP_INPUTS:
            value = inputs.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                steps += value
    return float(max(1, steps))


def stepping_nodes(graph: Mapping[str, Any]) -> frozenset[str]:
    """Ids of the nodes whose `steps` make up the work (if cached, the run says
    nothing about speed)."""
    return frozenset(
        str(node_id)
        for node_id, node in graph.items()
        if isinstance(node, Mapping)
        and isinstance(node.get("inputs"), Mapping)
        and any(name in node["inputs"] for name in STEP_INPUTS)
    )


def speed_key_of(graph: Mapping[str, Any]) -> str:
    """sha256[:16] of what sets the cost of one unit: node classes, links, model
    files and every other number, without seeds, steps and text."""
    shape = {str(node_id): _shape(node) for node_id, node in graph.items()}
    text = json.dumps(shape, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _shape(node: Any) -> Any:
    if not isinstance(node, Mapping):
        return None
    inputs = node.get("inputs")
    kept = {}
    if isinstance(inputs, Mapping):
        for name, value in inputs.items():
            if name in SEED_INPUTS or name in STEP_INPUTS:
                continue
            if isinstance(value, str) and not _names_a_file(value):
                continue  # prompt text, sampler names, file prefixes
            kept[name] = value
    return {"class_type": node.get("class_type"), "inputs": kept}


def _names_a_file(value: str) -> bool:
    # Model files (checkpoints, LoRAs...) change the cost of a step; text does not.
    return "." in value.rsplit("/", 1)[-1] and " " not in value


@dataclass(frozen=True, slots=True)
class Work:
    """A graph's size and the key its speed is learned under."""

    key: str
    units: float

    @classmethod
    def of(cls, graph: Mapping[str, Any]) -> Work:
        return cls(speed_key_of(graph), work_units(graph))


class SpeedTable:
    """The learned rates, read once (per dispatch pass), with the weights as priors."""

    def __init__(
        self, rates: Mapping[tuple[int, str], float], weights: Mapping[int, float]
    ) -> None:
        self.rates = dict(rates)  # (server id, key) -> seconds per unit
        self.weights = {sid: w for sid, w in weights.items() if w > 0}
        by_key: dict[str, list[tuple[int, float]]] = {}
        for (server_id, key), rate in self.rates.items():
            by_key.setdefault(key, []).append((server_id, rate))
        # Key -> what weight 1 would take by the servers that ran it, worked out once:
        # asked for every server of every pick.
        self._at_weight_one_by_key = {key: self._at_weight_one(ran) for key, ran in by_key.items()}
        every = [(server_id, rate) for (server_id, _key), rate in self.rates.items()]
        self._typical = self._at_weight_one(every) if every else DEFAULT_SECONDS_PER_UNIT

    @classmethod
    def load(cls, weights: Mapping[int, float]) -> SpeedTable:
        rows = ServerSpeed.objects.filter(server_id__in=list(weights)).values_list(
            "server_id", "key", "seconds_per_unit"
        )
        return cls({(sid, key): rate for sid, key, rate in rows}, weights)

    def seconds(self, server_id: int, work: Work) -> float:
        """Predicted seconds for `work` on the server, once it has started."""
        return self.rate(server_id, work.key) * work.units

    def rate(self, server_id: int, key: str) -> float:
        measured = self.rates.get((server_id, key))
        if measured is not None:
            return measured
        weight = self.weights.get(server_id, 1.0)
        at_weight_one = self._at_weight_one_by_key.get(key)
        if at_weight_one is not None:
            # What weight 1 would take, by the servers that ran it, then this one's weight.
            return at_weight_one / weight
        # Work no server ran yet: the fleet's typical rate for any work, if known.
        return self._typical / weight

    def _at_weight_one(self, rates: list[tuple[int, float]]) -> float:
        return statistics.median(rate * self.weights.get(sid, 1.0) for sid, rate in rates)


def remaining_seconds(predicted: float, ran: float, done: float = 0.0) -> float:
    """What is left of a prompt predicted to take `predicted` seconds, `ran` seconds
    after it started, `done` (0..1) of its work behind it. The prediction less the
    time run, trusted less as the prompt's own pace (`ran` per `done`) shows."""
    prior = max(predicted - ran, predicted * OVERRUN_SHARE)  # overran: still a little
    if not 0 < done < 1 or ran <= 0:
        return prior if done < 1 else 0.0
    own_pace = ran * (1 - done) / done
    return done * own_pace + (1 - done) * prior


def observe(server_id: int, work: Work, seconds: float) -> None:
    """One prompt of `work` ran `seconds` on the server: fold it into its rate."""
    if not 0 < seconds < MAX_SECONDS:
        return
    rate = seconds / work.units
    if _fold(server_id, work.key, rate):
        return
    try:
        with transaction.atomic():
            ServerSpeed.objects.create(
                server_id=server_id,
                key=work.key,
                seconds_per_unit=rate,
                last_seconds_per_unit=rate,
                samples=1,
                updated_at=timezone.now(),
            )
    except IntegrityError:  # another observer created it first, or the server is gone
        _fold(server_id, work.key, rate)


def _fold(server_id: int, key: str, rate: float) -> bool:
    return bool(
        ServerSpeed.objects.filter(server_id=server_id, key=key).update(
            seconds_per_unit=F("seconds_per_unit") * (1 - ALPHA) + rate * ALPHA,
            last_seconds_per_unit=rate,
            samples=F("samples") + 1,
            updated_at=timezone.now(),
        )
    )
