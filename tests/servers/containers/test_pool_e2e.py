"""End to end through the real processes and both Docker engines: `serve` (web, worker,
monitor) grows a pool from zero for a batch submitted through the API onto both
hosts, runs it on those containers, and shrinks the pool back to zero once they are idle."""

from __future__ import annotations

import pytest

from tests.factories import trivial_graph
from tests.pool_deployment import pool_deployment

pytestmark = pytest.mark.timeout(600)

TASKS = 20


def test_a_batch_grows_an_empty_pool_on_both_hosts_then_it_shrinks_back_to_zero(
    docker_engines, tmp_path
):
    with pool_deployment(tmp_path / "data", docker_engines.deployment) as world:
        hosts = world.add_hosts()
        assert [h["status"] for h in hosts] == ["ok", "ok"]
        pool = world.add_pool(min_size=0, max_size=4, jobs_per_container=2)
        assert pool["containers"] == []

        batch = world.submit(trivial_graph(), TASKS)["batch"]

        grown = world.wait(
            lambda: len(c := world.pool(pool["id"])["containers"]) == 4 and c, "4 containers"
        )
        # Placed on both hosts, fewest first. Which containers get the work is the
        # balancer's (the first ready may finish a short batch alone), not asserted.
        assert sorted(c["host"] for c in grown) == sorted([h["id"] for h in hosts] * 2)
        tasks = world.wait(
            lambda: (
                (t := world.batch_tasks(batch))
                and all(task["status"] == "completed" for task in t)
                and t
            ),
            f"{TASKS} tasks completed",
        )
        servers = {task["server"]["id"] for task in tasks}
        assert all(world.server(s)["kind"] == "container" for s in servers)
        assert all(len(task["outputs"]) == 1 for task in tasks)
        assert all(task["attempts"] == 1 for task in tasks)  # none lost, none run twice

        shrunk = world.wait(
            lambda: (p := world.pool(pool["id"]))["containers"] == [] and p, "pool back to 0"
        )
        assert shrunk["desired_size"] == 0
        actions = [d["action"] for d in shrunk["decisions"]]
        assert any(a.startswith("start") for a in actions)
        assert any(a.startswith("drain") for a in actions)
        listed = {s["id"] for s in world.call("GET", "servers")}
        assert not servers & listed  # their servers left the fleet with them
    for engine in docker_engines.engines:
        labelled = {"label": f"comfyweb.deployment={docker_engines.deployment}"}
        assert engine.client.containers.list(all=True, filters=labelled) == []


def test_a_restart_adopts_its_running_containers_and_removes_only_its_leftovers(
    docker_engines, tmp_path
):
    with pool_deployment(tmp_path / "data", docker_engines.deployment) as world:
        world.add_hosts()
        pool = world.add_pool(min_size=2, max_size=2)
        running = world.wait(
            lambda: (
                (c := world.pool(pool["id"])["containers"])
                and sum(x["state"] == "running" for x in c) == 2
                and c
            ),
            "2 running",
        )
        engine = docker_engines.engines[0]
        leftover = docker_engines.run_simulator(engine, engine.free_port())

        labelled = {"label": f"comfyweb.deployment={docker_engines.deployment}"}

        def gone() -> bool:
            return leftover.id not in {
                c.id for c in engine.client.containers.list(all=True, filters=labelled)
            }

        world.restart()
        world.wait(gone, "the leftover removed at start-up")
        after = world.pool(pool["id"])["containers"]
        assert {c["docker_id"] for c in after} == {c["docker_id"] for c in running}
        assert {c["state"] for c in after} == {"running"}
        on_engines = {
            c.id
            for e in docker_engines.engines
            for c in e.client.containers.list(all=True, filters=labelled)
        }
        assert on_engines == {c["docker_id"] for c in running}  # adopted, not duplicated
