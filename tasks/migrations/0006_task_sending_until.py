from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("tasks", "0005_task_collect_requested_at")]

    operations = [
        migrations.AddField(
            model_name="task",
            name="sending_until",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
