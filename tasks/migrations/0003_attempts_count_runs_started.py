"""`Task.attempts` counts runs started (1 on the first), not failures.

Existing rows are recounted from their timelines: every run started is one
`→ dispatched` event, so the new value is exact whatever the old one said.
"""

from django.db import migrations, models
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce


def count_runs_started(apps, schema_editor):
    Task = apps.get_model("tasks", "Task")
    TaskEvent = apps.get_model("tasks", "TaskEvent")
    started = (
        TaskEvent.objects.filter(task_id=OuterRef("pk"), to_status="dispatched")
        .order_by()
        .values("task_id")
        .annotate(n=Count("pk"))
        .values("n")
    )
    Task.objects.update(attempts=Coalesce(Subquery(started), 0))


class Migration(migrations.Migration):
    dependencies = [("tasks", "0002_work")]

    operations = [
        migrations.AlterField(
            model_name="task",
            name="attempts",
            field=models.PositiveSmallIntegerField(
                default=0, help_text="Runs started: dispatch adds one each time it sends the task."
            ),
        ),
        migrations.RunPython(count_runs_started, migrations.RunPython.noop),
    ]
