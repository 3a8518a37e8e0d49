"""`{% first_run_checklist %}`: the dashboard's first-run checklist, when it has one."""

from __future__ import annotations

from django import template

from onboarding import checklist

register = template.Library()


@register.inclusion_tag("onboarding/checklist.html", takes_context=True)
def first_run_checklist(context) -> dict:
    steps = checklist.checklist_for(context["user"]) or []
    return {
        "steps": steps,
        "done": sum(step.done for step in steps),
        "next": next((step for step in steps if not step.done), None),
        "csrf_token": context.get("csrf_token"),
    }
