# Workflows and templates moved here from the tasks app (issue 12). Their tables
# stay where tasks 0001/0002 made them (db_table keeps the names): this only tells
# the migration state that the models are now this app's.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('tasks', '0006_task_sending_until'),
        ('teams', '0001_initial'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
            migrations.CreateModel(
                name='Workflow',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('name', models.CharField(max_length=200)),
                    ('description', models.TextField(blank=True)),
                    ('tags', models.JSONField(blank=True, default=list)),
                    ('created_at', models.DateTimeField(auto_now_add=True)),
                    ('updated_at', models.DateTimeField(auto_now=True)),
                    ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ('team', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='workflows', to='teams.team')),
                ],
                options={
                    'db_table': 'tasks_workflow',
                    'ordering': ['name'],
                },
            ),
            migrations.CreateModel(
                name='WorkflowVersion',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('number', models.PositiveIntegerField()),
                    ('graph', models.JSONField()),
                    ('node_classes', models.JSONField(default=list)),
                    ('model_files', models.JSONField(default=list)),
                    ('workflow_key', models.CharField(db_index=True, max_length=64)),
                    ('note', models.CharField(blank=True, max_length=200)),
                    ('created_at', models.DateTimeField(auto_now_add=True)),
                    ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ('workflow', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='versions', to='workflows.workflow')),
                ],
                options={
                    'db_table': 'tasks_workflowversion',
                    'ordering': ['workflow', '-number'],
                },
            ),
            migrations.AddField(
                model_name='workflow',
                name='current_version',
                field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='workflows.workflowversion'),
            ),
            migrations.CreateModel(
                name='Template',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('name', models.CharField(max_length=200)),
                    ('description', models.TextField(blank=True)),
                    ('created_at', models.DateTimeField(auto_now_add=True)),
                    ('updated_at', models.DateTimeField(auto_now=True)),
                    ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ('team', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='templates', to='teams.team')),
                    ('workflow_version', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='templates', to='workflows.workflowversion')),
                ],
                options={
                    'db_table': 'tasks_template',
                    'ordering': ['name'],
                },
            ),
            migrations.CreateModel(
                name='TemplateParameter',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('name', models.SlugField(max_length=64)),
                    ('label', models.CharField(blank=True, max_length=100)),
                    ('help', models.CharField(blank=True, max_length=300)),
                    ('node_id', models.CharField(max_length=64)),
                    ('input_name', models.CharField(max_length=100)),
                    ('type', models.CharField(choices=[('int', 'Whole number'), ('float', 'Number'), ('text', 'Text'), ('bool', 'Yes/no'), ('choice', 'Choice'), ('seed', 'Seed'), ('image', 'Image upload')], max_length=10)),
                    ('default', models.JSONField(blank=True, null=True)),
                    ('minimum', models.FloatField(blank=True, null=True)),
                    ('maximum', models.FloatField(blank=True, null=True)),
                    ('choices', models.JSONField(blank=True, default=list)),
                    ('position', models.PositiveSmallIntegerField(default=0)),
                    ('template', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='parameters', to='workflows.template')),
                ],
                options={
                    'db_table': 'tasks_templateparameter',
                    'ordering': ['template', 'position', 'name'],
                    'constraints': [models.UniqueConstraint(fields=('template', 'name'), name='unique_parameter_name')],
                },
            ),
            migrations.AddConstraint(
                model_name='workflowversion',
                constraint=models.UniqueConstraint(fields=('workflow', 'number'), name='unique_version_number'),
            ),
            migrations.AddConstraint(
                model_name='workflow',
                constraint=models.UniqueConstraint(fields=('team', 'name'), name='unique_workflow_name_per_team'),
            ),
            migrations.AddConstraint(
                model_name='template',
                constraint=models.UniqueConstraint(fields=('team', 'name'), name='unique_template_name_per_team'),
            ),
            ],
            database_operations=[],
        ),
    ]
