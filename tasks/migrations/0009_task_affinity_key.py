from django.db import migrations, models

from servers.requirements import affinity_key_of

WAITING_OR_ON_A_SERVER = ("pending", "dispatched", "running")


def key_the_unfinished_tasks(apps, schema_editor):
    # Finished tasks are never placed again: only these need a key.
    Task = apps.get_model("tasks", "Task")
    for task in Task.objects.filter(status__in=WAITING_OR_ON_A_SERVER).only(
        "pk", "graph", "workflow_version_id"
    ):
        key = affinity_key_of(task.graph, task.workflow_version_id)
        Task.objects.filter(pk=task.pk).update(affinity_key=key)


class Migration(migrations.Migration):
    dependencies = [("tasks", "0008_task_slot_held")]

    operations = [
        migrations.AddField(
            model_name="task",
            name="affinity_key",
            field=models.CharField(blank=True, max_length=64),
        ),
        migrations.RunPython(key_the_unfinished_tasks, migrations.RunPython.noop),
    ]
