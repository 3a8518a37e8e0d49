"""Every recorded scenario replayed against the simulator and compared with the
capture: per-client message sequences (types, order, fields, values), HTTP
statuses, content types and bodies; ids and timestamps excepted."""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any

import pytest

from servers.simulator import SimulatedComfyUI, SimulatorConfig

from . import capture
from .compare import Normaliser, describe_sequence, first_difference, summarise_like, ws_entry
from .replay import Observed, Replay

pytestmark = pytest.mark.skipif(
    not capture.available(), reason=f"the shared capture is not at {capture.CAPTURE}"
)

# The recorded durations. The order of actions and messages does not depend on
# them (the replay paces the simulator's work), only how long the replay takes.
REPLAY_TIME_SCALE = 1.0


# Scenarios whose requests must land between two steps of a running prompt.
MID_RUN_SCENARIOS = (
    "interrupt",
    "interrupt_targeted",
    "delete_pending",
    "delete_last_pending",
    "clear_queue",
    "no_client_id_interrupt",
)


async def _replay(data_dir: pathlib.Path, *, late: float = 0.0) -> Observed:
    # The recorded peer had no model files and a fresh data directory.
    config = SimulatorConfig(time_scale=REPLAY_TIME_SCALE, models={})
    sim = SimulatedComfyUI("127.0.0.1", 0, data_dir=data_dir, config=config)
    replay = Replay(sim, late=late)
    sim.config.pace = replay.pace
    await sim.start()
    try:
        return await replay.run()
    finally:
        await sim.stop()


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Observed:
    # One run of the whole capture, in order: later scenarios depend on the
    # state earlier ones left (cache, counters, history, output files).
    return asyncio.run(_replay(tmp_path_factory.mktemp("conformance")))


def _compare_ws(name: str, observed: Observed) -> list[str]:
    recorded: dict[str, list[dict[str, Any]]] = {}
    for record in capture.scenarios()[name].ws():
        recorded.setdefault(record["client"], []).append(record)
    simulated = observed.ws.get(name, {})
    cap_norm, sim_norm = Normaliser(observed.ids, "cap"), Normaliser(observed.ids, "sim")
    problems = []
    for label in sorted(set(recorded) | set(simulated)):
        expected = recorded.get(label, [])
        actual = simulated.get(label, [])
        exp_types, act_types = describe_sequence(expected), describe_sequence(actual)
        if exp_types != act_types:
            problems.append(
                f"client {label}: sequence\n  expected {exp_types}\n  got      {act_types}"
            )
            continue
        for index, (e, a) in enumerate(zip(expected, actual, strict=True)):
            diff = first_difference(cap_norm(ws_entry(e)), sim_norm(ws_entry(a)))
            if diff:
                problems.append(f"client {label} message {index} ({exp_types[index]}): {diff}")
                break
    return problems


def _compare_http(name: str, observed: Observed) -> list[str]:
    recorded = capture.scenarios()[name].http()
    simulated = observed.http.get(name, [])
    if len(recorded) != len(simulated):
        return [f"{len(recorded)} HTTP exchanges recorded, {len(simulated)} replayed"]
    cap_norm, sim_norm = Normaliser(observed.ids, "cap"), Normaliser(observed.ids, "sim")
    problems = []
    for record, got in zip(recorded, simulated, strict=True):
        request = f"{record['method']} {record['path']}"
        if record["status"] != got["status"]:
            problems.append(f"{request}: status {record['status']} != {got['status']}")
            continue
        if record["content_type"] != got["content_type"]:
            problems.append(
                f"{request}: content type {record['content_type']!r} != {got['content_type']!r}"
            )
            continue
        expected, actual, _ = summarise_like(record["body"], got["body"])
        diff = first_difference(cap_norm(expected), sim_norm(actual))
        if diff:
            problems.append(f"{request}: {diff}")
    return problems


@pytest.mark.parametrize("name", capture.scenario_names())
def test_scenario_matches_the_recorded_comfyui(name: str, observed: Observed) -> None:
    problems = list(observed.problems.get(name, []))
    problems += _compare_ws(name, observed)
    problems += _compare_http(name, observed)
    assert not problems, f"scenario {name}: {capture.scenarios()[name].note}\n" + "\n".join(
        problems
    )


def test_requests_sent_late_by_a_busy_machine_still_land_between_the_same_steps(
    tmp_path: pathlib.Path,
) -> None:
    # Three 100 ms steps late: what a loaded machine did to the unpaced replay.
    late = asyncio.run(_replay(tmp_path, late=0.3))
    problems = {
        name: late.problems.get(name, []) + _compare_ws(name, late) + _compare_http(name, late)
        for name in MID_RUN_SCENARIOS
    }
    assert not any(problems.values()), problems
