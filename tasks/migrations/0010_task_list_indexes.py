"""Indexes the task list reads in order (#15): tasks newest first, for one team
(task_team_newest) and for everyone (task_newest, which holds the team and
status it filters on). The single-column indexes on team and created_at, which
these lead with, go (after the new ones exist)."""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("tasks", "0009_task_affinity_key"),
        ("teams", "0001_initial"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="task",
            index=models.Index(fields=["team", "-created_at", "-id"], name="task_team_newest"),
        ),
        migrations.AddIndex(
            model_name="task",
            index=models.Index(fields=["-created_at", "-id", "team", "status"], name="task_newest"),
        ),
        migrations.AlterField(
            model_name="task",
            name="created_at",
            field=models.DateTimeField(default=django.utils.timezone.now),
        ),
        migrations.AlterField(
            model_name="task",
            name="team",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="tasks",
                to="teams.team",
            ),
        ),
    ]
