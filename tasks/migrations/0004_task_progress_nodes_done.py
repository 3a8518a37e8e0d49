"""`Task.progress_nodes_done`: how many of the graph's nodes are done, stored with
the other progress numbers so a page load shows "node x of y" as the socket does.

Existing rows get it back from what they stored: their fraction was
(nodes done + value/max) / nodes in the graph, so nodes done is the whole part of
fraction * nodes - value/max. Only rows with progress matter (a completed task
shows 100 % whatever it counted).
"""

import math

from django.db import migrations, models

BATCH = 500


def nodes_done_from_fraction(apps, schema_editor):
    Task = apps.get_model("tasks", "Task")
    rows = (
        Task.objects.filter(progress_fraction__gt=0)
        .exclude(status="completed")
        .only("pk", "graph", "progress_fraction", "progress_value", "progress_max")
    )
    changed = []
    for task in rows.iterator(chunk_size=BATCH):
        graph = task.graph if isinstance(task.graph, dict) else {}
        total = max(1, sum(1 for node in graph.values() if isinstance(node, dict)))
        step = min(task.progress_value / task.progress_max, 1.0) if task.progress_max else 0.0
        done = math.floor(task.progress_fraction * total - step + 1e-6)
        task.progress_nodes_done = min(max(done, 0), total)
        changed.append(task)
        if len(changed) >= BATCH:
            Task.objects.bulk_update(changed, ["progress_nodes_done"])
            changed = []
    Task.objects.bulk_update(changed, ["progress_nodes_done"])


class Migration(migrations.Migration):
    dependencies = [("tasks", "0003_attempts_count_runs_started")]

    operations = [
        migrations.AddField(
            model_name="task",
            name="progress_nodes_done",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.RunPython(nodes_done_from_fraction, migrations.RunPython.noop),
    ]
