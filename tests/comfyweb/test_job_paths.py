"""Every job is queued by a dotted path that names a function in an app's `jobs.py`.

The paths are read from the source (async_task calls, the schedules, the
constants of `tasks.enqueue`), so a job queued under a second name, or straight
from the module that does the work, fails here. `settings.py` and `urls.py` are
left out: their dotted paths are Django's own hooks, not jobs.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

from django.utils.module_loading import import_string

ROOT = Path(__file__).resolve().parents[2]
APPS = ("api", "comfyweb", "library", "servers", "tasks", "webhooks")
DOTTED = re.compile(rf"^(?:{'|'.join(APPS)})(?:\.\w+)+$")
NOT_JOBS = {"settings.py", "urls.py"}


def dotted_strings() -> dict[str, str]:
    """Each dotted string literal of the apps' code, and a file that holds it."""
    found: dict[str, str] = {}
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            if path.name in NOT_JOBS:
                continue
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Constant) and DOTTED.match(str(node.value)):
                    found.setdefault(node.value, str(path.relative_to(ROOT)))
    return found


def resolved(path: str) -> object | None:
    try:
        return import_string(path)
    except ImportError:
        return None


def defined_in_a_jobs_module(path: str) -> bool:
    module = path.rsplit(".", 1)[0]
    return module.endswith(".jobs") and resolved(path).__module__ == module


def test_every_job_path_names_a_function_of_a_jobs_module():
    strings = dotted_strings()
    jobs = {s: f for s, f in strings.items() if inspect.isfunction(resolved(s))}
    # The scan sees the paths that are queued and scheduled today.
    assert {
        "tasks.jobs.dispatch",
        "tasks.jobs.reconcile",
        "tasks.jobs.reconcile_server",
        "tasks.jobs.collect_outputs",
        "comfyweb.jobs.publish_health",
        "api.jobs.forget_idempotency_keys",
        "servers.jobs.tend_pools",
        "servers.jobs.remove_container",
        "library.jobs.run_download",
        "library.jobs.resume_downloads",
    } <= set(jobs)
    outside = {s: f for s, f in jobs.items() if not defined_in_a_jobs_module(s)}
    assert outside == {}, "jobs queued outside a jobs.py (path: file)"
    dangling = {s: f for s, f in strings.items() if ".jobs." in s and s not in jobs}
    assert dangling == {}, "job paths that name no function (path: file)"
