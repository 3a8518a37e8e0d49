"""What each task's graph weighs (`servers.speed.Work`), kept on the task when it is
submitted so dispatch and the ETA never read graphs for it (issue 16). Unfinished
tasks are filled in here; finished ones are never weighed again."""

from django.db import migrations, models

UNFINISHED = ("pending", "dispatched", "running")


def weigh_unfinished(apps, schema_editor):
    from servers.speed import Work

    Task = apps.get_model("tasks", "Task")
    unfinished = Task.objects.filter(status__in=UNFINISHED, speed_key="")
    for task in unfinished.only("pk", "graph").iterator(chunk_size=500):
        work = Work.of(task.graph if isinstance(task.graph, dict) else {})
        Task.objects.filter(pk=task.pk).update(speed_key=work.key, work_units=work.units)


class Migration(migrations.Migration):
    dependencies = [("tasks", "0010_task_list_indexes")]

    operations = [
        migrations.AddField(
            model_name="task",
            name="speed_key",
            field=models.CharField(blank=True, max_length=16),
        ),
        migrations.AddField(
            model_name="task",
            name="work_units",
            field=models.FloatField(default=0.0),
        ),
        migrations.RunPython(weigh_unfinished, migrations.RunPython.noop, elidable=True),
    ]
