from django.db import migrations


class Migration(migrations.Migration):
    """Affinity is keyed on what stays loaded (models and workflow version), no
    longer on the whole graph: the fields say so."""

    dependencies = [("servers", "0007_models_library_mounts")]

    operations = [
        migrations.RenameField("serverstate", "last_workflow_key", "last_affinity_key"),
        migrations.RenameField("serverstate", "last_workflow_at", "last_affinity_at"),
    ]
