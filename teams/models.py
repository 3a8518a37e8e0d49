"""Teams: who may see and do what (design card D4).

Everything a team makes (workflows, templates, tasks, outputs) belongs to one
team; later models hang off `Team`. Staff users see every team and run the fleet.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.text import slugify


class Role(models.TextChoices):
    ADMIN = "admin", "Team admin"
    MEMBER = "member", "Member"
    VIEWER = "viewer", "Viewer"

    @property
    def can_submit(self) -> bool:
        return self in {Role.ADMIN, Role.MEMBER}

    @property
    def can_manage(self) -> bool:
        return self is Role.ADMIN


class TeamQuerySet(models.QuerySet):
    def for_user(self, user) -> TeamQuerySet:
        """Teams `user` may look at: all of them for staff, else their memberships."""
        if not user.is_authenticated or not user.is_active:
            return self.none()
        if user.is_staff:
            return self.all()
        return self.filter(memberships__user=user)

    def submittable_by(self, user) -> TeamQuerySet:
        """Teams `user` may submit work to (and cancel it in): `Team.can_submit` for
        many teams in one query."""
        if not user.is_authenticated or not user.is_active:
            return self.none()
        if user.is_staff:
            return self.all()
        roles = [role for role in Role if role.can_submit]
        # One filter() call: the user and the role of the same membership.
        return self.filter(memberships__user=user, memberships__role__in=roles)


class TeamScopedQuerySet(models.QuerySet):
    """For models that belong to a team: what `user` may see (all of it for staff)."""

    def for_user(self, user) -> TeamScopedQuerySet:
        return self.filter(team__in=Team.objects.for_user(user))


class Team(models.Model):
    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=100, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="teams"
    )

    objects = TeamQuerySet.as_manager()

    class Meta:
        db_table = "tasks_team"  # created by the tasks app, whose table names it keeps
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        if not self.slug:
            self.slug = slugify(self.name)[:100]
        super().save(*args, **kwargs)

    def role_of(self, user) -> Role | None:
        """The user's role here; staff act as team admins everywhere."""
        if not user.is_authenticated or not user.is_active:
            return None
        if user.is_staff:
            return Role.ADMIN
        membership = self.memberships.filter(user=user).only("role").first()
        return Role(membership.role) if membership else None

    def can_view(self, user) -> bool:
        return self.role_of(user) is not None

    def can_submit(self, user) -> bool:
        role = self.role_of(user)
        return role is not None and role.can_submit

    def can_manage(self, user) -> bool:
        role = self.role_of(user)
        return role is not None and role.can_manage


class Membership(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    joined_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "tasks_membership"  # created by the tasks app, whose table names it keeps
        ordering = ["team__name", "user__username"]
        constraints = [
            models.UniqueConstraint(fields=["team", "user"], name="one_membership_per_team")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.get_role_display()})"
