"""Schema upgrades keep existing rows true: migrations run against data."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)


def migrate(*target: tuple[str, str]):
    """Migrate to `target`; the historical app registry at that state."""
    executor = MigrationExecutor(connection)
    executor.migrate(list(target))
    executor.loader.build_graph()
    return executor.loader.project_state(list(target)).apps


def test_upgrading_recounts_attempts_as_runs_started():
    old = migrate(("tasks", "0002_work"))
    team = old.get_model("tasks", "Team").objects.create(name="T", slug="t")
    Task = old.get_model("tasks", "Task")
    TaskEvent = old.get_model("tasks", "TaskEvent")

    def task(status: str, attempts: int, runs: int):
        made = Task.objects.create(team=team, graph={}, status=status, attempts=attempts)
        for _ in range(runs):
            TaskEvent.objects.create(task=made, from_status="pending", to_status="dispatched")
        return made.pk

    # The old count was of failures: a first run in progress or done said 0.
    never_sent = task("pending", 0, runs=0)
    running_first = task("running", 0, runs=1)
    completed_after_a_retry = task("completed", 1, runs=2)
    failed_three_times = task("failed", 3, runs=3)
    rejected_once = task("failed", 0, runs=1)
    try:
        new = migrate(*[("tasks", "0003_attempts_count_runs_started")])
        attempts = dict(new.get_model("tasks", "Task").objects.values_list("pk", "attempts"))
    finally:
        migrate(*MigrationExecutor(connection).loader.graph.leaf_nodes())
    assert attempts == {
        never_sent: 0,
        running_first: 1,
        completed_after_a_retry: 2,
        failed_three_times: 3,
        rejected_once: 1,
    }


def test_upgrading_recovers_nodes_done_from_the_stored_fraction():
    old = migrate(("tasks", "0003_attempts_count_runs_started"))
    team = old.get_model("tasks", "Team").objects.create(name="T", slug="t")
    Task = old.get_model("tasks", "Task")
    three = {str(n): {"class_type": "X", "inputs": {}} for n in (1, 2, 3)}

    def task(status: str, fraction: float, value: int = 0, max_: int = 0) -> int:
        return Task.objects.create(
            team=team,
            graph=three,
            status=status,
            progress_fraction=fraction,
            progress_value=value,
            progress_max=max_,
        ).pk

    sampling = task("running", (1 + 38 / 150) / 3, 38, 150)
    between_nodes = task("failed", 2 / 3)
    almost_done = task("canceled", (2 + 149 / 150) / 3, 149, 150)
    not_started = task("pending", 0.0)
    try:
        new = migrate(("tasks", "0004_task_progress_nodes_done"))
        done = dict(new.get_model("tasks", "Task").objects.values_list("pk", "progress_nodes_done"))
    finally:
        migrate(*MigrationExecutor(connection).loader.graph.leaf_nodes())
    assert done == {sampling: 1, between_nodes: 2, almost_done: 2, not_started: 0}


def test_upgrading_moves_teams_and_workflows_to_their_apps_keeping_every_row():
    """Issue 12: teams, workflows and templates left the tasks app. A database
    made before keeps its rows, their links and the permissions granted on them."""
    old = migrate(
        ("tasks", "0006_task_sending_until"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    )
    User = old.get_model("auth", "User")
    Permission = old.get_model("auth", "Permission")
    ContentType = old.get_model("contenttypes", "ContentType")
    alice = User.objects.create(username="alice")
    team = old.get_model("tasks", "Team").objects.create(name="Studio", slug="studio")
    old.get_model("tasks", "Membership").objects.create(team=team, user=alice, role="admin")
    workflow = old.get_model("tasks", "Workflow").objects.create(team=team, name="Portrait")
    version = old.get_model("tasks", "WorkflowVersion").objects.create(
        workflow=workflow, number=1, graph={"1": {"class_type": "X", "inputs": {}}}
    )
    workflow.current_version = version
    workflow.save()
    template = old.get_model("tasks", "Template").objects.create(
        team=team, workflow_version=version, name="Quick portrait"
    )
    old.get_model("tasks", "TemplateParameter").objects.create(
        template=template, name="steps", node_id="1", input_name="steps", type="int"
    )
    task = old.get_model("tasks", "Task").objects.create(
        team=team, workflow_version=version, template=template, graph=version.graph
    )
    # What post_migrate made for the old app, and a permission granted on it.
    team_type = ContentType.objects.get_or_create(app_label="tasks", model="team")[0]
    change_team = Permission.objects.get_or_create(
        content_type=team_type, codename="change_team", defaults={"name": "Can change team"}
    )[0]
    alice.user_permissions.add(change_team)
    try:
        new = migrate(*MigrationExecutor(connection).loader.graph.leaf_nodes())
        Task = new.get_model("tasks", "Task")
        moved = Task.objects.select_related(
            "team", "template", "workflow_version__workflow__current_version"
        ).get(pk=task.pk)
        seen = {
            "team": moved.team.name,
            "members": list(moved.team.members.values_list("username", flat=True)),
            "workflow": moved.workflow_version.workflow.name,
            "current": moved.workflow_version.workflow.current_version.number,
            "template": moved.template.name,
            "parameters": list(moved.template.parameters.values_list("name", flat=True)),
            "models": (
                type(moved.team)._meta.label,
                type(moved.workflow_version)._meta.label,
                type(moved.template)._meta.label,
            ),
        }
        granted = list(
            new.get_model("auth", "User")
            .objects.get(pk=alice.pk)
            .user_permissions.values_list("content_type__app_label", "codename")
        )
    finally:
        migrate(*MigrationExecutor(connection).loader.graph.leaf_nodes())
    assert seen == {
        "team": "Studio",
        "members": ["alice"],
        "workflow": "Portrait",
        "current": 1,
        "template": "Quick portrait",
        "parameters": ["steps"],
        "models": ("teams.Team", "workflows.WorkflowVersion", "workflows.Template"),
    }
    assert granted == [("teams", "change_team")]
