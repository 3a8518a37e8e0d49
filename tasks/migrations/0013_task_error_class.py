from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("tasks", "0012_task_client_id"),
    ]

    operations = [
        migrations.AddField(
            model_name="task",
            name="error_class",
            field=models.CharField(blank=True, max_length=20),
        ),
    ]
