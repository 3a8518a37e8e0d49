from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("tasks", "0004_task_progress_nodes_done")]

    operations = [
        migrations.AddField(
            model_name="task",
            name="collect_requested_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
