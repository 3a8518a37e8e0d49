"""What a user chose about the first-run checklist (issue 16, part 5)."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class ChecklistDismissal(models.Model):
    """The user hid the dashboard's first-run checklist: it stays hidden for them,
    whatever is still to do (other users still see theirs)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="checklist_dismissal"
    )
    dismissed_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.user} dismissed the checklist"
