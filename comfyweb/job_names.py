"""django-q's rows in the admin, named as background jobs, not tasks.

django-q calls its rows "tasks" ("Failed tasks", "Successful tasks"), right beside
ComfyWeb's own Tasks (the images people asked for): a failed dispatch or clean-up
job read as a failed image. Only the display names change: the models' migration
state (`_meta.original_attrs`) keeps django-q's own, so no migration follows.
"""

from __future__ import annotations

from django.apps import apps

# model name -> (singular, plural) as the admin shows them, under the app label
# Q_CLUSTER["label"] ("Background jobs").
NAMES = {
    "failure": ("failed job", "failed jobs"),
    "success": ("successful job", "successful jobs"),
    "schedule": ("scheduled job", "scheduled jobs"),
    "ormq": ("queued job", "queued jobs"),
}


def rename() -> None:
    for model_name, (singular, plural) in NAMES.items():
        meta = apps.get_model("django_q", model_name)._meta
        meta.verbose_name, meta.verbose_name_plural = singular, plural
