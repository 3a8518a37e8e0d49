"""The run form the workflow pages show: `{% run_form workflow version %}`.

The workflows app renders its pages without importing the tasks app; running
work is this app's, so the form comes from here. A page the run view re-renders
after a refused run passes its bound form as `run_form` in the context.
"""

from __future__ import annotations

from django import template

from tasks.forms import RunForm

register = template.Library()


@register.inclusion_tag("tasks/run_form.html", takes_context=True)
def run_form(context, workflow, version) -> dict:
    return {
        "form": context.get("run_form") or RunForm(),
        "workflow": workflow,
        "version": version,
        "csrf_token": context.get("csrf_token"),
    }
