# Teams moved here from the tasks app (issue 12). Their tables stay where tasks
# 0001/0002 made them (db_table keeps the names): this only tells the migration
# state that the models are now this app's, so existing databases upgrade in place.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('tasks', '0006_task_sending_until'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
            migrations.CreateModel(
                name='Membership',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('role', models.CharField(choices=[('admin', 'Team admin'), ('member', 'Member'), ('viewer', 'Viewer')], default='member', max_length=10)),
                    ('joined_at', models.DateTimeField(auto_now_add=True)),
                    ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='memberships', to=settings.AUTH_USER_MODEL)),
                ],
                options={
                    'db_table': 'tasks_membership',
                    'ordering': ['team__name', 'user__username'],
                },
            ),
            migrations.CreateModel(
                name='Team',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('name', models.CharField(max_length=100, unique=True)),
                    ('slug', models.SlugField(max_length=100, unique=True)),
                    ('created_at', models.DateTimeField(auto_now_add=True)),
                    ('members', models.ManyToManyField(related_name='teams', through='teams.Membership', to=settings.AUTH_USER_MODEL)),
                ],
                options={
                    'db_table': 'tasks_team',
                    'ordering': ['name'],
                },
            ),
            migrations.AddField(
                model_name='membership',
                name='team',
                field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='memberships', to='teams.team'),
            ),
            migrations.AddConstraint(
                model_name='membership',
                constraint=models.UniqueConstraint(fields=('team', 'user'), name='one_membership_per_team'),
            ),
            ],
            database_operations=[],
        ),
    ]
