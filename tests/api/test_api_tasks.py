"""Tasks and batches over the API: submit, list, follow, cancel (api/routers/tasks.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone

from servers.models import Server
from tasks.models import Batch, Output, Priority, Status, Task
from teams.models import Membership, Role
from tests.api.callers import caller_for, error_of
from tests.factories import (
    add_version,
    empty_save_template,
    make_task,
    make_team,
    make_template,
    make_user,
    make_workflow,
    shared_workflow,
    trivial_graph,
)
from workflows.models import ParameterType

pytestmark = pytest.mark.django_db

MISSING = 999_999
PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"
    b"\x90wS\xde\x00\x00\x00\x0cIDATx\x9cc\xf8\xcf\xc0\x00\x00\x03\x01\x01\x00\xc9\xfe\x92\xef"
    b"\x00\x00\x00\x00IEND\xaeB`\x82"
)
TASK_KEYS = {
    "id",
    "status",
    "priority",
    "team",
    "workflow",
    "version",
    "template",
    "params",
    "server",
    "prompt_id",
    "attempts",
    "max_attempts",
    "cancel_requested",
    "progress",
    "error",
    "waiting_reason",
    "outputs",
    "queue_position",
    "eta_seconds",
    "created_at",
    "dispatched_at",
    "started_at",
    "finished_at",
    "batch",
}


@pytest.fixture(autouse=True)
def woken(monkeypatch) -> list[int]:
    """Dispatch never runs here: its wake-up is recorded instead of enqueued."""
    calls: list[int] = []
    monkeypatch.setattr("tasks.enqueue.wake_dispatch", lambda: calls.append(1))
    return calls


@pytest.fixture
def template(world):
    """empty_save with width (int 1..2048), color (choice 0/255/65280), prefix (text)."""
    return empty_save_template(world.team)


@pytest.fixture
def seeded_template(world):
    """A template on a KSampler graph binding its seed and steps."""
    version = make_workflow(world.team, graph=trivial_graph(seed=5)).current_version
    return make_template(
        version,
        parameters=[
            {
                "name": "seed",
                "node_id": "3",
                "input_name": "seed",
                "type": ParameterType.SEED,
                "default": 5,
            },
            {
                "name": "steps",
                "node_id": "3",
                "input_name": "steps",
                "type": ParameterType.INT,
                "default": 1,
                "minimum": 1,
                "maximum": 100,
            },
        ],
    )


def fields_of(response) -> dict[str, str]:
    """The 400's field problems, {field: message}."""
    assert response.status_code == 400, response.content
    error = error_of(response)
    assert error["type"] == "validation_error"
    return {p["field"]: p["message"] for p in error["details"]["fields"]}


def task_row(response_task) -> Task:
    return Task.objects.get(pk=response_task["id"])


def with_output(task, content_type="image/png", data=PNG, **fields) -> Output:
    output = Output(task=task, team=task.team, content_type=content_type, size=len(data), **fields)
    output.file.save("ignored", ContentFile(data), save=False)
    output.save()
    return output


# -- POST /tasks: what gets queued ---------------------------------------------------


def test_template_params_land_in_the_tasks_graph(world, template):
    response = world.member("POST", "tasks", {"template": template.pk, "params": {"width": 640}})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["batch"] is None
    (task,) = body["tasks"]
    assert set(task) == TASK_KEYS
    assert task["status"] == "pending"
    assert task["template"] == {"id": template.pk, "name": template.name}
    assert task["workflow"]["id"] == template.workflow_version.workflow_id
    assert task["params"]["width"] == 640
    assert task_row(task).graph["1"]["inputs"]["width"] == 640


def test_missing_params_take_the_templates_defaults(world, template):
    response = world.member("POST", "tasks", {"template": template.pk, "params": {"color": 255}})
    (task,) = response.json()["tasks"]
    assert task["params"] == {"width": 512, "color": 255, "prefix": "comfyweb_empty"}
    inputs = task_row(task).graph["1"]["inputs"]
    assert (inputs["width"], inputs["color"]) == (512, 255)


def test_a_count_makes_a_batch_of_runs_with_different_seeds(world, seeded_template):
    body = {"template": seeded_template.pk, "params": {"steps": 4}, "count": 3}
    response = world.member("POST", "tasks", body)
    assert response.status_code == 201, response.content
    tasks, batch = response.json()["tasks"], response.json()["batch"]
    assert len(tasks) == 3
    assert batch is not None
    assert {t["batch"] for t in tasks} == {batch}
    assert Batch.objects.get(pk=batch).team == world.team
    seeds = {t["params"]["seed"] for t in tasks}
    assert len(seeds) == 3
    assert {task_row(t).graph["3"]["inputs"]["seed"] for t in tasks} == seeds
    assert {t["params"]["steps"] for t in tasks} == {4}


def test_a_counted_graph_gets_a_fresh_seed_per_run(world):
    response = world.member("POST", "tasks", {"graph": trivial_graph(seed=1), "count": 3})
    assert response.status_code == 201, response.content
    seeds = {task_row(t).graph["3"]["inputs"]["seed"] for t in response.json()["tasks"]}
    assert len(seeds) == 3


def test_a_sweep_makes_one_task_per_value_with_that_value(world, template):
    sweep = {"param": "width", "values": [256, 512, 1024]}
    response = world.member("POST", "tasks", {"template": template.pk, "sweep": sweep})
    assert response.status_code == 201, response.content
    tasks = response.json()["tasks"]
    assert [t["params"]["width"] for t in tasks] == [256, 512, 1024]
    assert [task_row(t).graph["1"]["inputs"]["width"] for t in tasks] == [256, 512, 1024]
    assert response.json()["batch"] is not None


def test_a_sweep_of_the_seed_keeps_the_swept_seeds(world, seeded_template):
    sweep = {"param": "seed", "values": [11, 22, 33]}
    response = world.member("POST", "tasks", {"template": seeded_template.pk, "sweep": sweep})
    assert response.status_code == 201, response.content
    tasks = response.json()["tasks"]
    assert [t["params"]["seed"] for t in tasks] == [11, 22, 33]
    assert [task_row(t).graph["3"]["inputs"]["seed"] for t in tasks] == [11, 22, 33]


def test_a_sweep_of_an_int_bound_to_a_seed_input_runs_the_swept_values(world):
    version = make_workflow(world.team, graph=trivial_graph(seed=5)).current_version
    template = make_template(
        version,
        parameters=[
            {"name": "s", "node_id": "3", "input_name": "seed", "type": "int", "default": 5}
        ],
    )
    sweep = {"param": "s", "values": [314282915, 7, 8]}
    tasks = world.member("POST", "tasks", {"template": template.pk, "sweep": sweep}).json()["tasks"]
    assert [t["params"] for t in tasks] == [{"s": 314282915}, {"s": 7}, {"s": 8}]
    assert [task_row(t).graph["3"]["inputs"]["seed"] for t in tasks] == [314282915, 7, 8]


def test_a_counted_graph_records_each_runs_seed_in_its_params(world):
    response = world.member("POST", "tasks", {"graph": trivial_graph(seed=1), "count": 3})
    for task in response.json()["tasks"]:
        assert task["params"] == {"3.seed": task_row(task).graph["3"]["inputs"]["seed"]}


def test_a_tasks_params_submitted_again_reproduce_its_graph(world):
    """A count gave each run a fresh seed on an input no parameter sets ("3.seed")."""
    version = make_workflow(world.team, graph=trivial_graph(seed=5)).current_version
    template = make_template(
        version,
        parameters=[{"name": "steps", "node_id": "3", "input_name": "steps", "type": "int"}],
    )
    body = {"template": template.pk, "params": {"steps": 2}, "count": 2}
    first = world.member("POST", "tasks", body).json()["tasks"][0]
    assert set(first["params"]) == {"steps", "3.seed"}
    again = world.member("POST", "tasks", {"template": template.pk, "params": first["params"]})
    assert again.status_code == 201, again.content
    assert task_row(again.json()["tasks"][0]).graph == task_row(first).graph


SEED_MAX = 2**64 - 1


def test_a_seed_beyond_2_64_minus_1_is_a_400_naming_the_bound(world, seeded_template):
    body = {"template": seeded_template.pk, "params": {"seed": 99999999999999999999999999999}}
    fields = fields_of(world.member("POST", "tasks", body))
    assert fields == {"params.seed": f"A seed is at most 2**64 - 1 ({SEED_MAX})."}
    sweep = {"param": "seed", "values": [1, SEED_MAX, SEED_MAX + 1]}
    body = {"template": seeded_template.pk, "sweep": sweep}
    assert set(fields_of(world.member("POST", "tasks", body))) == {"sweep.values[2]"}
    assert not Task.objects.exists()


def test_a_graph_with_a_seed_beyond_2_64_minus_1_is_a_400(world):
    response = world.member("POST", "tasks", {"graph": trivial_graph(seed=SEED_MAX + 1)})
    details = error_of(response)["details"]
    assert response.status_code == 400
    assert str(SEED_MAX) in details["node_errors"]["3"][0]["message"]
    assert not Task.objects.exists()
    response = world.member("POST", "tasks", {"graph": trivial_graph(seed=SEED_MAX)})
    assert response.status_code == 201, response.content


def test_a_workflow_runs_its_current_version_or_the_one_named(world):
    workflow = make_workflow(world.team)
    add_version(workflow, trivial_graph(seed=3))
    current = world.member("POST", "tasks", {"workflow": workflow.pk}).json()["tasks"][0]
    assert (current["workflow"]["id"], current["version"]) == (workflow.pk, 2)
    assert task_row(current).graph == trivial_graph(seed=3)
    first = world.member("POST", "tasks", {"workflow": workflow.pk, "version": 1})
    assert first.json()["tasks"][0]["version"] == 1
    assert task_row(first.json()["tasks"][0]).graph == shared_workflow("empty_save")


def test_an_unknown_version_number_is_a_404(world):
    workflow = make_workflow(world.team)
    response = world.member("POST", "tasks", {"workflow": workflow.pk, "version": 7})
    assert response.status_code == 404
    assert error_of(response)["type"] == "not_found"


def test_a_workflow_without_a_version_is_a_409(world):
    from workflows.models import Workflow

    bare = Workflow.objects.create(team=world.team, name="Bare")
    response = world.member("POST", "tasks", {"workflow": bare.pk})
    assert response.status_code == 409
    assert error_of(response)["type"] == "conflict"


def test_a_graph_goes_to_the_users_only_team(world):
    response = world.member("POST", "tasks", {"graph": trivial_graph()})
    assert response.status_code == 201, response.content
    (task,) = response.json()["tasks"]
    assert task["team"] == {"id": world.team.pk, "name": "Studio"}
    assert (task["workflow"], task["template"], task["version"]) == (None, None, None)


@pytest.mark.parametrize(
    ("name", "stored"),
    [
        ("low", Priority.LOW),
        ("normal", Priority.NORMAL),
        ("high", Priority.HIGH),
        ("urgent", Priority.URGENT),
    ],
)
def test_the_priority_is_stored_and_echoed(world, name, stored):
    response = world.member("POST", "tasks", {"graph": trivial_graph(), "priority": name})
    (task,) = response.json()["tasks"]
    assert task["priority"] == name
    assert task_row(task).priority == stored


def test_the_priority_defaults_to_normal(world):
    (task,) = world.member("POST", "tasks", {"graph": trivial_graph()}).json()["tasks"]
    assert task["priority"] == "normal"


def test_dispatch_is_woken_once_the_submission_commits(
    world, woken, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        assert world.member("POST", "tasks", {"graph": trivial_graph()}).status_code == 201
    assert woken == [1]


# -- POST /tasks: what is refused -------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"width": 0}, "params.width"),
        ({"width": 4096}, "params.width"),
        ({"width": "wide"}, "params.width"),
        ({"color": 7}, "params.color"),
    ],
)
def test_a_bad_param_value_is_a_400_naming_the_param(world, template, params, field):
    response = world.member("POST", "tasks", {"template": template.pk, "params": params})
    assert set(fields_of(response)) == {field}
    assert not Task.objects.exists()


def test_an_unknown_param_is_a_400_listing_the_known_ones(world, template):
    response = world.member("POST", "tasks", {"template": template.pk, "params": {"height": 9}})
    message = fields_of(response)["params.height"]
    assert "color, prefix, width" in message


def test_every_bad_param_is_reported_at_once(world, template):
    params = {"width": -1, "color": 1, "nope": 2}
    response = world.member("POST", "tasks", {"template": template.pk, "params": params})
    assert set(fields_of(response)) == {"params.width", "params.color", "params.nope"}


@pytest.mark.parametrize(
    "sources",
    [(), ("workflow", "template"), ("workflow", "graph"), ("template", "graph")],
    ids=["none", "workflow+template", "workflow+graph", "template+graph"],
)
def test_exactly_one_source_is_required(world, template, sources):
    given = {
        "workflow": template.workflow_version.workflow_id,
        "template": template.pk,
        "graph": trivial_graph(),
    }
    body = {name: given[name] for name in sources} | {"priority": "high"}
    response = world.member("POST", "tasks", body)
    assert "exactly one of workflow, template or graph" in fields_of(response)["request"]
    assert not Task.objects.exists()


@pytest.mark.parametrize("source", ["workflow", "graph"])
def test_a_sweep_needs_a_template(world, template, source):
    given = {"workflow": template.workflow_version.workflow_id, "graph": trivial_graph()}
    body = {source: given[source], "sweep": {"param": "width", "values": [1, 2]}}
    assert set(fields_of(world.member("POST", "tasks", body))) == {"sweep"}


def test_a_sweep_and_a_count_together_are_refused(world, template):
    body = {"template": template.pk, "count": 2, "sweep": {"param": "width", "values": [1, 2]}}
    assert set(fields_of(world.member("POST", "tasks", body))) == {"count"}


def test_a_sweep_of_an_unknown_param_names_the_sweepable_ones(world, template):
    body = {"template": template.pk, "sweep": {"param": "height", "values": [1]}}
    message = fields_of(world.member("POST", "tasks", body))["sweep.param"]
    assert "width" in message
    assert "color" in message


def test_a_bad_sweep_value_is_named_by_its_position(world, template):
    body = {"template": template.pk, "sweep": {"param": "width", "values": [64, 0, "x"]}}
    response = world.member("POST", "tasks", body)
    assert set(fields_of(response)) == {"sweep.values[1]", "sweep.values[2]"}


@pytest.mark.parametrize("values", [[], list(range(1001))], ids=["empty", "over-1000"])
def test_a_sweep_needs_one_to_a_thousand_values(world, template, values):
    body = {"template": template.pk, "sweep": {"param": "width", "values": values}}
    assert "sweep.values" in fields_of(world.member("POST", "tasks", body))


def test_params_without_a_template_are_refused(world):
    body = {"graph": trivial_graph(), "params": {"seed": 1}}
    assert set(fields_of(world.member("POST", "tasks", body))) == {"params"}


def test_a_graph_with_a_broken_node_reports_node_errors(world):
    graph = trivial_graph() | {"7": {"inputs": {}}}
    response = world.member("POST", "tasks", {"graph": graph})
    details = error_of(response)["details"]
    assert response.status_code == 400
    assert "7" in details["node_errors"]
    assert details["node_errors"]["7"][0]["type"] == "invalid_prompt"
    assert {p["field"] for p in details["fields"]} == {"graph"}


def test_a_graph_without_outputs_reports_errors(world):
    response = world.member("POST", "tasks", {"graph": shared_workflow("invalid_no_outputs")})
    details = error_of(response)["details"]
    assert response.status_code == 400
    assert any("no outputs" in message for message in details["errors"])
    assert details["node_errors"] == {}


@pytest.mark.parametrize("graph", [[1, 2], "graph", 3], ids=["list", "string", "number"])
def test_a_graph_that_is_not_an_object_is_a_400(world, graph):
    assert "graph" in fields_of(world.member("POST", "tasks", {"graph": graph}))


@pytest.mark.parametrize("count", [0, -1, 1001, "many"])
def test_a_count_outside_one_to_a_thousand_is_a_400(world, count):
    response = world.member("POST", "tasks", {"graph": trivial_graph(), "count": count})
    assert set(fields_of(response)) == {"count"}


def test_a_bogus_priority_is_a_400(world):
    response = world.member("POST", "tasks", {"graph": trivial_graph(), "priority": "bogus"})
    assert set(fields_of(response)) == {"priority"}


def test_a_description_over_200_characters_is_a_400(world):
    response = world.member("POST", "tasks", {"graph": trivial_graph(), "description": "x" * 201})
    assert set(fields_of(response)) == {"description"}


def test_a_body_that_is_not_json_is_a_400(world):
    response = world.member.client.post(
        "/api/v1/tasks",
        data="{not json",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {world.member.token}",
    )
    assert response.status_code == 400
    assert error_of(response)["type"] == "validation_error"


@pytest.fixture
def two_team_user(world):
    user = make_user("tess", team=world.team, role=Role.MEMBER)
    third = make_team("Third")
    Membership.objects.create(team=third, user=user, role=Role.MEMBER)
    return caller_for(user), third


def test_a_graph_from_a_user_in_two_teams_must_name_one(world, two_team_user):
    caller, third = two_team_user
    message = fields_of(caller("POST", "tasks", {"graph": trivial_graph()}))["team"]
    assert str(world.team.pk) in message
    assert str(third.pk) in message
    response = caller("POST", "tasks", {"graph": trivial_graph(), "team": third.pk})
    assert response.status_code == 201
    assert response.json()["tasks"][0]["team"]["id"] == third.pk


def test_a_graph_for_a_team_the_user_is_not_in_is_a_404(world, two_team_user):
    caller, _ = two_team_user
    response = caller("POST", "tasks", {"graph": trivial_graph(), "team": world.other_team.pk})
    assert response.status_code == 404
    missing = caller("POST", "tasks", {"graph": trivial_graph(), "team": MISSING})
    assert error_of(response) == error_of(missing)


@pytest.mark.parametrize("source", ["workflow", "template", "graph"])
def test_a_viewer_cannot_submit(world, template, source):
    given = {
        "workflow": template.workflow_version.workflow_id,
        "template": template.pk,
        "graph": trivial_graph(),
    }
    response = world.viewer("POST", "tasks", {source: given[source]})
    assert response.status_code == 403
    assert error_of(response)["type"] == "permission_denied"
    assert not Task.objects.exists()


def test_a_viewer_naming_their_team_for_a_graph_is_a_403(world):
    response = world.viewer("POST", "tasks", {"graph": trivial_graph(), "team": world.team.pk})
    assert response.status_code == 403


@pytest.mark.parametrize("source", ["workflow", "template"])
def test_another_teams_source_is_a_404_like_a_missing_one(world, template, source):
    ids = {"workflow": template.workflow_version.workflow_id, "template": template.pk}
    theirs = world.stranger("POST", "tasks", {source: ids[source]})
    missing = world.stranger("POST", "tasks", {source: MISSING})
    assert theirs.status_code == missing.status_code == 404
    assert error_of(theirs) == error_of(missing)
    assert not Task.objects.exists()


def test_another_teams_template_leaks_no_parameter_names(world, template):
    response = world.stranger("POST", "tasks", {"template": template.pk, "params": {"x": 1}})
    assert response.status_code == 404
    assert "width" not in response.content.decode()


def test_a_thousand_runs_are_accepted(world):
    response = world.member("POST", "tasks", {"graph": trivial_graph(), "count": 1000})
    assert response.status_code == 201
    assert len(response.json()["tasks"]) == 1000
    assert Task.objects.filter(batch=response.json()["batch"]).count() == 1000


def test_submitting_anonymously_is_a_401(world):
    response = world.anonymous("POST", "tasks", {"graph": trivial_graph()})
    assert response.status_code == 401
    assert error_of(response)["type"] == "not_authenticated"


# -- GET /tasks ------------------------------------------------------------------------


def test_the_list_holds_the_users_teams_tasks_newest_first(world):
    now = timezone.now()
    ours = [make_task(world.team, created_at=now - timedelta(minutes=m)) for m in (3, 1, 2)]
    make_task(world.other_team)
    response = world.viewer("GET", "tasks")
    assert response.status_code == 200
    body = response.json()
    assert [t["id"] for t in body["items"]] == [ours[1].pk, ours[2].pk, ours[0].pk]
    assert (body["count"], body["page"], body["pages"], body["page_size"]) == (3, 1, 1, 50)
    assert set(body["items"][0]) == TASK_KEYS


def test_staff_list_every_teams_tasks(world):
    make_task(world.team), make_task(world.other_team)
    assert world.staff("GET", "tasks").json()["count"] == 2


def test_a_stranger_lists_only_their_own_teams_tasks(world):
    make_task(world.team)
    theirs = make_task(world.other_team)
    assert [t["id"] for t in world.stranger("GET", "tasks").json()["items"]] == [theirs.pk]


def test_the_list_filters_by_status_batch_priority_and_team(world):
    batch = Batch.objects.create(team=world.team)
    failed = make_task(world.team, status=Status.FAILED)
    batched = make_task(world.team, batch=batch)
    urgent = make_task(world.team, priority=Priority.URGENT)
    elsewhere = make_task(world.other_team)

    def ids(**query):
        response = world.staff("GET", "tasks", **query)
        assert response.status_code == 200, response.content
        return {t["id"] for t in response.json()["items"]}

    assert ids(status="failed") == {failed.pk}
    assert ids(batch=batch.pk) == {batched.pk}
    assert ids(priority="urgent") == {urgent.pk}
    assert ids(team=world.other_team.pk) == {elsewhere.pk}
    assert ids(status="pending", team=world.team.pk) == {batched.pk, urgent.pk}


def test_the_list_pages_through_many_tasks(world):
    now = timezone.now()
    made = [make_task(world.team, created_at=now - timedelta(minutes=m)) for m in range(5)]
    second = world.member("GET", "tasks", page=2, page_size=2).json()
    assert [t["id"] for t in second["items"]] == [made[2].pk, made[3].pk]
    assert (second["count"], second["page"], second["pages"], second["page_size"]) == (5, 2, 3, 2)
    past_the_end = world.member("GET", "tasks", page=9, page_size=2).json()
    assert past_the_end["items"] == []
    assert past_the_end["count"] == 5


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"status": "done"}, "status"),
        ({"priority": "bogus"}, "priority"),
        ({"batch": "x"}, "batch"),
        ({"page": 0}, "page"),
        ({"page_size": 201}, "page_size"),
    ],
)
def test_a_bad_list_filter_is_a_400_naming_it(world, query, field):
    assert set(fields_of(world.member("GET", "tasks", **query))) == {field}


def test_listing_anonymously_is_a_401(world):
    assert world.anonymous("GET", "tasks").status_code == 401


# -- GET /tasks/{id} --------------------------------------------------------------------


def test_a_submitted_task_reads_back_with_every_field(world, template):
    submitted = world.member("POST", "tasks", {"template": template.pk, "priority": "high"})
    task_id = submitted.json()["tasks"][0]["id"]
    response = world.viewer("GET", f"tasks/{task_id}")
    assert response.status_code == 200
    task = response.json()
    assert set(task) == TASK_KEYS
    assert task == submitted.json()["tasks"][0]
    assert task["priority"] == "high"
    assert task["server"] is None
    assert task["error"] is None
    assert task["outputs"] == []
    assert task["progress"] == {
        "fraction": 0.0,
        "percent": 0,
        "summary": "0 % overall",
        "node": None,
        "node_title": None,
        "node_type": None,
        "value": 0,
        "max": 0,
        "nodes_done": 0,
        "nodes_total": 2,
    }
    assert task["dispatched_at"] is None
    assert task["batch"] is None


def test_a_failed_task_shows_its_server_error_and_progress(world):
    server = Server.objects.create(name="gpu-1", base_url="http://127.0.0.1:9")
    task = make_task(
        world.team,
        status=Status.FAILED,
        server=server,
        prompt_id="p-123",
        attempts=2,
        error_type="execution_error",
        error_message="CUDA out of memory",
        error_node="3",
        progress_node="3",
        progress_node_type="KSampler",
        progress_value=4,
        progress_max=20,
        progress_nodes_done=2,
        progress_fraction=(2 + 4 / 20) / 6,
        dispatched_at=timezone.now(),
        started_at=timezone.now(),
        finished_at=timezone.now(),
    )
    body = world.member("GET", f"tasks/{task.pk}").json()
    assert body["status"] == "failed"
    assert body["server"] == {"id": server.pk, "name": "gpu-1"}
    assert (body["prompt_id"], body["attempts"]) == ("p-123", 2)
    assert body["error"] == {
        "type": "execution_error",
        "message": "CUDA out of memory",
        "node_id": "3",
        "class": None,  # a row from before failures were classed
    }
    assert body["progress"] == {
        "fraction": pytest.approx((2 + 4 / 20) / 6),
        "percent": 36,
        "summary": "36 % overall",
        "node": "3",
        "node_title": "KSampler",
        "node_type": "KSampler",
        "value": 4,
        "max": 20,
        "nodes_done": 2,
        "nodes_total": 6,
    }
    assert None not in (body["dispatched_at"], body["started_at"], body["finished_at"])


def test_an_error_with_only_a_message_has_a_generic_type(world):
    task = make_task(world.team, status=Status.FAILED, error_message="server vanished")
    error = world.member("GET", f"tasks/{task.pk}").json()["error"]
    assert error == {"type": "error", "message": "server vanished", "node_id": None, "class": None}


def test_a_completed_task_lists_its_outputs_with_download_urls(world, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    task = make_task(world.team, status=Status.COMPLETED, progress_fraction=0.5)
    output = with_output(task, original_name="cat_00001_.png", width=1, height=1)
    body = world.member("GET", f"tasks/{task.pk}").json()
    assert body["progress"]["fraction"] == 1.0
    assert body["outputs"] == [
        {
            "id": output.pk,
            "filename": "cat_00001_.png",
            "content_type": "image/png",
            "width": 1,
            "height": 1,
            "size": len(PNG),
            "url": f"/api/v1/outputs/{output.pk}/file",
        }
    ]


def test_an_output_without_a_server_name_is_named_by_its_file(world, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    task = make_task(world.team, status=Status.COMPLETED)
    output = with_output(task)
    (shown,) = world.member("GET", f"tasks/{task.pk}").json()["outputs"]
    assert shown["filename"] == output.file.name.rsplit("/", 1)[-1]
    assert shown["width"] is None


def test_staff_read_any_teams_task(world):
    task = make_task(world.other_team)
    assert world.staff("GET", f"tasks/{task.pk}").status_code == 200


def test_another_teams_task_is_a_404_like_a_missing_one(world):
    theirs = world.member("GET", f"tasks/{make_task(world.other_team).pk}")
    missing = world.member("GET", f"tasks/{MISSING}")
    assert theirs.status_code == missing.status_code == 404
    assert error_of(theirs) == error_of(missing)


def test_reading_a_task_anonymously_is_a_401(world):
    assert world.anonymous("GET", f"tasks/{make_task(world.team).pk}").status_code == 401


# -- POST /tasks/{id}/cancel ------------------------------------------------------------


def test_canceling_a_pending_task_cancels_it_at_once(world):
    task = make_task(world.team)
    response = world.member("POST", f"tasks/{task.pk}/cancel")
    assert response.status_code == 200
    assert response.json()["id"] == task.pk
    assert response.json()["status"] == "canceled"
    assert response.json()["outcome"] == "canceled"
    task.refresh_from_db()
    assert task.status == Status.CANCELED
    assert task.events.filter(to_status=Status.CANCELED).exists()


@pytest.mark.parametrize("status", [Status.COMPLETED, Status.FAILED, Status.CANCELED])
def test_canceling_a_finished_task_leaves_it_as_it_is(world, status):
    task = make_task(world.team, status=status)
    response = world.member("POST", f"tasks/{task.pk}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == status
    assert response.json()["outcome"] == "finished"  # nothing was canceled, and it says so
    task.refresh_from_db()
    assert task.status == status


def test_canceling_a_task_on_an_unreachable_server_marks_it_requested(world):
    server = Server.objects.create(name="down", base_url="http://127.0.0.1:9")
    task = make_task(world.team, status=Status.DISPATCHED, server=server, prompt_id="p-1")
    body = world.member("POST", f"tasks/{task.pk}/cancel").json()
    assert (body["status"], body["cancel_requested"], body["outcome"]) == (
        "dispatched",
        True,
        "unreachable",
    )


def test_staff_may_cancel_any_teams_task(world):
    task = make_task(world.other_team)
    assert world.staff("POST", f"tasks/{task.pk}/cancel").json()["status"] == "canceled"


def test_a_viewer_cannot_cancel(world):
    task = make_task(world.team)
    response = world.viewer("POST", f"tasks/{task.pk}/cancel")
    assert response.status_code == 403
    assert error_of(response)["type"] == "permission_denied"
    task.refresh_from_db()
    assert task.status == Status.PENDING


def test_canceling_another_teams_task_is_a_404_like_a_missing_one(world):
    task = make_task(world.other_team)
    theirs = world.member("POST", f"tasks/{task.pk}/cancel")
    missing = world.member("POST", f"tasks/{MISSING}/cancel")
    assert theirs.status_code == missing.status_code == 404
    assert error_of(theirs) == error_of(missing)
    task.refresh_from_db()
    assert task.status == Status.PENDING


def test_canceling_anonymously_is_a_401(world):
    task = make_task(world.team)
    assert world.anonymous("POST", f"tasks/{task.pk}/cancel").status_code == 401
    task.refresh_from_db()
    assert task.status == Status.PENDING


# -- POST /batches/{id}/cancel ----------------------------------------------------------


@pytest.fixture
def batch(world):
    """A batch of three pending tasks (submitted over the API) and a completed one."""
    response = world.member("POST", "tasks", {"graph": trivial_graph(), "count": 3})
    batch = Batch.objects.get(pk=response.json()["batch"])
    make_task(world.team, status=Status.COMPLETED, batch=batch)
    return batch


def test_canceling_a_batch_cancels_its_pending_tasks(world, batch):
    response = world.member("POST", f"batches/{batch.pk}/cancel")
    assert response.status_code == 200
    assert response.json() == {"batch": batch.pk, "outcomes": {"canceled": 3}}
    statuses = sorted(batch.tasks.values_list("status", flat=True))
    assert statuses == [Status.CANCELED] * 3 + [Status.COMPLETED]


def test_a_batch_cancel_counts_each_outcome(world, batch):
    server = Server.objects.create(name="down", base_url="http://127.0.0.1:9")
    make_task(world.team, status=Status.RUNNING, server=server, prompt_id="p-9", batch=batch)
    response = world.admin("POST", f"batches/{batch.pk}/cancel")
    assert response.json()["outcomes"] == {"canceled": 3, "unreachable": 1}


def test_canceling_a_finished_batch_changes_nothing(world, batch):
    world.member("POST", f"batches/{batch.pk}/cancel")
    again = world.member("POST", f"batches/{batch.pk}/cancel")
    assert again.status_code == 200
    assert again.json() == {"batch": batch.pk, "outcomes": {}}


def test_a_viewer_cannot_cancel_a_batch(world, batch):
    response = world.viewer("POST", f"batches/{batch.pk}/cancel")
    assert response.status_code == 403
    assert batch.tasks.filter(status=Status.PENDING).count() == 3


def test_canceling_another_teams_batch_is_a_404_like_a_missing_one(world, batch):
    theirs = world.stranger("POST", f"batches/{batch.pk}/cancel")
    missing = world.stranger("POST", f"batches/{MISSING}/cancel")
    assert theirs.status_code == missing.status_code == 404
    assert error_of(theirs) == error_of(missing)
    assert batch.tasks.filter(status=Status.PENDING).count() == 3


def test_canceling_a_batch_anonymously_is_a_401(world, batch):
    assert world.anonymous("POST", f"batches/{batch.pk}/cancel").status_code == 401
    assert batch.tasks.filter(status=Status.PENDING).count() == 3
