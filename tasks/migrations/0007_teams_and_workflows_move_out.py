# Teams, workflows and templates left this app for their own (issue 12): in the
# migration state only, since their tables keep their names. Their content types
# move with them, so permissions granted on them and admin history stay attached.

import django.db.models.deletion
from django.db import migrations, models

MOVED = {
    "team": "teams",
    "membership": "teams",
    "workflow": "workflows",
    "workflowversion": "workflows",
    "template": "workflows",
    "templateparameter": "workflows",
}


def move_content_types(apps, schema_editor, *, source=None) -> None:
    content_types = apps.get_model("contenttypes", "ContentType")
    for model, app_label in MOVED.items():
        old, new = ("tasks", app_label) if source is None else (app_label, "tasks")
        # A fresh database has none yet (post_migrate creates them under the new label).
        if not content_types.objects.filter(app_label=new, model=model).exists():
            content_types.objects.filter(app_label=old, model=model).update(app_label=new)


def move_content_types_back(apps, schema_editor) -> None:
    move_content_types(apps, schema_editor, source="back")


class Migration(migrations.Migration):
    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("tasks", "0006_task_sending_until"),
        ("teams", "0001_initial"),
        ("workflows", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveConstraint(
                    model_name="membership",
                    name="one_membership_per_team",
                ),
                migrations.RemoveField(
                    model_name="team",
                    name="members",
                ),
                migrations.AlterField(
                    model_name="output",
                    name="team",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="outputs",
                        to="teams.team",
                    ),
                ),
                migrations.AlterField(
                    model_name="task",
                    name="team",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="tasks",
                        to="teams.team",
                    ),
                ),
                migrations.AlterField(
                    model_name="batch",
                    name="team",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="batches",
                        to="teams.team",
                    ),
                ),
                migrations.AlterField(
                    model_name="queuepause",
                    name="team",
                    field=models.OneToOneField(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="queue_pause",
                        to="teams.team",
                    ),
                ),
                migrations.RemoveConstraint(
                    model_name="template",
                    name="unique_template_name_per_team",
                ),
                migrations.AlterField(
                    model_name="task",
                    name="template",
                    field=models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="tasks",
                        to="workflows.template",
                    ),
                ),
                migrations.RemoveConstraint(
                    model_name="templateparameter",
                    name="unique_parameter_name",
                ),
                migrations.RemoveConstraint(
                    model_name="workflow",
                    name="unique_workflow_name_per_team",
                ),
                migrations.RemoveConstraint(
                    model_name="workflowversion",
                    name="unique_version_number",
                ),
                migrations.AlterField(
                    model_name="task",
                    name="workflow_version",
                    field=models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="tasks",
                        to="workflows.workflowversion",
                    ),
                ),
                migrations.RemoveField(
                    model_name="template",
                    name="created_by",
                ),
                migrations.RemoveField(
                    model_name="template",
                    name="team",
                ),
                migrations.RemoveField(
                    model_name="template",
                    name="workflow_version",
                ),
                migrations.RemoveField(
                    model_name="templateparameter",
                    name="template",
                ),
                migrations.RemoveField(
                    model_name="workflow",
                    name="created_by",
                ),
                migrations.RemoveField(
                    model_name="workflow",
                    name="current_version",
                ),
                migrations.RemoveField(
                    model_name="workflow",
                    name="team",
                ),
                migrations.RemoveField(
                    model_name="workflowversion",
                    name="created_by",
                ),
                migrations.RemoveField(
                    model_name="workflowversion",
                    name="workflow",
                ),
                migrations.DeleteModel(
                    name="Membership",
                ),
                migrations.DeleteModel(
                    name="Template",
                ),
                migrations.DeleteModel(
                    name="TemplateParameter",
                ),
                migrations.DeleteModel(
                    name="Team",
                ),
                migrations.DeleteModel(
                    name="Workflow",
                ),
                migrations.DeleteModel(
                    name="WorkflowVersion",
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(move_content_types, move_content_types_back, elidable=False),
    ]
