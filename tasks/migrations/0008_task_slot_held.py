from django.db import migrations, models

ACTIVE = ("dispatched", "running")


def active_tasks_hold_their_slots(apps, schema_editor):
    # Before this field every active task held a slot until it left the active states.
    apps.get_model("tasks", "Task").objects.filter(status__in=ACTIVE).update(slot_held=True)


class Migration(migrations.Migration):
    dependencies = [("tasks", "0007_teams_and_workflows_move_out")]

    operations = [
        migrations.AddField(
            model_name="task",
            name="slot_held",
            field=models.BooleanField(default=False),
        ),
        migrations.RunPython(active_tasks_hold_their_slots, migrations.RunPython.noop),
    ]
