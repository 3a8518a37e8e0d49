"""One name for the balancer's affinity (#12): `lock_window` becomes `affinity_window`."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("servers", "0002_node_catalogue"),
    ]

    operations = [
        migrations.RenameField(
            model_name="fleetsettings",
            old_name="lock_window",
            new_name="affinity_window",
        ),
    ]
