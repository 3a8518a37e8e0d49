"""Measured speed (issue 15): a graph's work and key, the learned rates and their priors."""

from __future__ import annotations

import copy

import pytest

from servers import speed
from servers.models import ServerSpeed
from tests.factories import make_server, shared_workflow


def slow(steps: int = 5, seconds_per_step: float = 0.2, changes=None) -> dict:
    graph = copy.deepcopy(shared_workflow("slow_progress"))
    graph["2"]["inputs"] |= {"steps": steps, "seconds_per_step": seconds_per_step}
    for (node, name), value in (changes or {}).items():
        graph[node]["inputs"][name] = value
    return graph


def test_the_work_of_a_graph_is_its_sampling_steps_at_least_one():
    assert speed.work_units(slow(steps=12)) == 12
    assert speed.work_units({"1": {"class_type": "SaveImage", "inputs": {}}}) == 1
    assert speed.stepping_nodes(slow()) == {"2"}


def test_runs_of_one_template_share_a_key_whatever_their_seed_steps_or_text():
    base = speed.speed_key_of(slow(steps=5))
    assert speed.speed_key_of(slow(steps=30)) == base
    assert speed.speed_key_of(slow(changes={("2", "nonce"): 99})) == base
    assert speed.speed_key_of(slow(changes={("3", "filename_prefix"): "other"})) == base
    # What each step costs is part of the key: sizes, numbers, model files.
    assert speed.speed_key_of(slow(seconds_per_step=0.4)) != base
    assert speed.speed_key_of(slow(changes={("1", "width"): 1024})) != base
    with_model = slow(changes={("3", "filename_prefix"): "sdxl/base.safetensors"})
    assert speed.speed_key_of(with_model) != base


def test_a_server_without_measurements_is_predicted_from_the_others_scaled_by_weight():
    work = speed.Work("k", units=10)
    table = speed.SpeedTable({(1, "k"): 0.1}, weights={1: 4.0, 2: 1.0, 3: 0.5})
    assert table.seconds(1, work) == pytest.approx(1.0)  # measured
    assert table.seconds(2, work) == pytest.approx(4.0)  # 0.1 s at weight 4 -> 0.4 at 1
    assert table.seconds(3, work) == pytest.approx(8.0)
    # This kind of work never ran anywhere: the fleet's typical rate for any work
    # (0.4 s a unit at weight 1 here), over the weight.
    other = speed.Work("new", units=10)
    assert table.seconds(2, other) == pytest.approx(4.0)
    assert table.seconds(1, other) == pytest.approx(1.0)
    # Nothing measured at all: the default rate over the weight.
    empty = speed.SpeedTable({}, weights={1: 4.0, 2: 1.0})
    assert empty.seconds(2, other) == pytest.approx(10 * speed.DEFAULT_SECONDS_PER_UNIT)
    assert empty.seconds(1, other) == pytest.approx(10 * speed.DEFAULT_SECONDS_PER_UNIT / 4)


def test_a_measurement_overrides_a_wrong_weight():
    # Configured as the faster one, measured as the slower: the measurement wins.
    table = speed.SpeedTable({(1, "k"): 0.5, (2, "k"): 0.1}, weights={1: 4.0, 2: 1.0})
    work = speed.Work("k", units=10)
    assert table.seconds(2, work) < table.seconds(1, work)


@pytest.mark.django_db
def test_observations_fold_into_a_running_mean_per_server_and_key():
    server = make_server()
    work = speed.Work("k", units=10)
    speed.observe(server.pk, work, 2.0)
    row = ServerSpeed.objects.get(server=server, key="k")
    assert (row.seconds_per_unit, row.samples) == (pytest.approx(0.2), 1)
    speed.observe(server.pk, work, 4.0)
    row.refresh_from_db()
    assert row.samples == 2
    assert row.seconds_per_unit == pytest.approx(0.2 * (1 - speed.ALPHA) + 0.4 * speed.ALPHA)
    assert row.last_seconds_per_unit == pytest.approx(0.4)
    # Clock trouble is not a speed.
    speed.observe(server.pk, work, -1.0)
    row.refresh_from_db()
    assert row.samples == 2


@pytest.mark.django_db
def test_the_server_page_shows_what_was_measured(client, django_user_model):
    server = make_server("gpu-measured")
    speed.observe(server.pk, speed.Work("abc123", units=20), 4.0)
    client.force_login(django_user_model.objects.create_user("viewer", is_staff=True))
    html = client.get(f"/servers/{server.pk}/").content.decode()
    assert "<code>abc123</code></td><td>0.200</td>" in html
