"""`{% quota_warnings %}`: the dashboard's notice to a team's members at 80 % of a GPU quota."""

from __future__ import annotations

from django import template

from accounting import quotas
from accounting.models import TeamQuota

register = template.Library()


@register.inclusion_tag("accounting/quota_warnings.html", takes_context=True)
def quota_warnings(context) -> dict:
    user = context["request"].user
    # Only the teams the user is a member of: staff are not warned of every team's month.
    limited = TeamQuota.objects.filter(team__memberships__user=user).select_related("team")
    warnings = []
    for quota in limited:
        state = quotas.state_of(quota.team_id)
        if state is not None and state.warnings:
            warnings.append((quota.team, state))
    return {"warnings": warnings}
