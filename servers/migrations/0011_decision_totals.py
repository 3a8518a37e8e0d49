"""A balancing decision keeps its leaders and counts the rest (`fleet._summary`);
the rows already kept held every server, so their totals are those lists' lengths."""

from django.db import migrations, models


def count_kept(apps, schema_editor):
    decisions = apps.get_model("servers", "BalancerDecision")
    for row in decisions.objects.only("pk", "candidates", "excluded").iterator():
        decisions.objects.filter(pk=row.pk).update(
            candidates_total=len(row.candidates or []), excluded_total=len(row.excluded or {})
        )


class Migration(migrations.Migration):
    dependencies = [
        ("servers", "0010_server_lease"),
    ]

    operations = [
        migrations.AddField(
            model_name="balancerdecision",
            name="candidates_total",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="balancerdecision",
            name="excluded_total",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.RunPython(count_kept, migrations.RunPython.noop),
    ]
