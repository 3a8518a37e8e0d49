"""Who may do what on every page and API operation: the table the authorization
matrix (test_authorization_matrix.py) walks, one entry per route name or operation.

A new URL or API operation fails the matrix until it has an entry here: which of
the world's objects (team A's) fill its path, a valid body for unsafe methods, and
what each role gets — anonymous; the viewer, member and admin of team A; `stranger`,
the admin of another team; staff (a team admin everywhere).

The rules are teams/models.py's, as the views and routers apply them: viewers
read (validating a workflow and previewing a template are reads), members also
submit, cancel, and create and edit workflows and templates, admins also delete
them and control their team's queue. Another team's objects are a 404, exactly like
missing ones; what is no team's (the fleet, the whole queue) is a 403 to all but staff.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tasks.models import Priority
from tests.factories import shared_workflow
from workflows.forms.templates import ParameterFormSet

MARKER = "Qzv7marker"  # in the name of every named object of team A
ROLES = ("anonymous", "viewer", "member", "admin", "stranger", "staff")
TEAM_ROLES = ("viewer", "member", "admin")
RANK = {"viewer": 0, "member": 1, "admin": 2}
PAGE_METHODS = ("GET", "POST")
TASK_STATES = ("pending", "dispatched", "running", "completed", "failed", "canceled")


# --- What a role gets --------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    """One role's answer: its status, and whether the request wrote to the database
    (True: it must, False: it must not, None: either)."""

    statuses: tuple[int, ...]
    writes: bool | None = False
    redirect_to: tuple[str, ...] = ()  # a 302 must go to one of these (a prefix)
    # True: the answer names team A's objects (a list of them); the stranger's never may.
    marker: bool = False


def ok(*statuses: int, writes: bool | None = False, marker: bool = False) -> Expect:
    return Expect(statuses, writes=writes, marker=marker)


LOGIN = Expect((302,), redirect_to=("/login/",))
UNAUTHORIZED = Expect((401,))
DENIED = Expect((403,))
HIDDEN = Expect((404,))
NOT_ALLOWED = Expect((405,))
# staff_member_required: signed-in non-staff are sent to the admin's login.
STAFF_GATE = Expect((302,), redirect_to=("/admin/login/",))

Rules = dict[str, Expect]


def team_object(level: str, allowed: Expect) -> Rules:
    """An object of team A: its roles from `level` up and staff get `allowed`, lower
    roles 403, the other team's admin 404."""
    rules = {role: allowed if RANK[role] >= RANK[level] else DENIED for role in TEAM_ROLES}
    return rules | {"stranger": HIDDEN, "staff": allowed}


def signed_in(allowed: Expect) -> Rules:
    """Anyone signed in; a list shows team A's objects to all but the stranger."""
    stranger = Expect(allowed.statuses, allowed.writes, allowed.redirect_to, marker=False)
    return dict.fromkeys(TEAM_ROLES, allowed) | {"stranger": stranger, "staff": allowed}


def staff_only(allowed: Expect, refused: Expect = DENIED) -> Rules:
    return dict.fromkeys((*TEAM_ROLES, "stranger"), refused) | {"staff": allowed}


# --- The table ---------------------------------------------------------------

Body = Callable[[dict[str, int]], dict[str, Any]]  # the world's ids -> data


@dataclass(frozen=True)
class Case:
    method: str
    rules: Rules  # every role, anonymous included
    ids: dict[str, str] = field(default_factory=dict)  # path parameter -> world object
    body: Body | None = None
    query: Body | None = None
    label: str = ""


def page(method: str, rules: Rules, anonymous: Expect = LOGIN, **kwargs: Any) -> Case:
    return Case(method, {"anonymous": anonymous} | rules, **kwargs)


def op(rules: Rules, **kwargs: Any) -> Case:
    return Case("", {"anonymous": UNAUTHORIZED} | rules, **kwargs)


def no_method(method: str, **kwargs: Any) -> Case:
    """A page method its view refuses (405) before looking anything up."""
    return page(method, signed_in(NOT_ALLOWED), **kwargs)


def staff_post(writes: bool, ids: dict[str, str], body: Body | None = None) -> list[Case]:
    """A staff action (@staff_member_required, POST only): everyone else, anonymous
    included, is sent to the admin's login; staff's GET is a 405."""
    return [
        page("GET", staff_only(NOT_ALLOWED, STAFF_GATE), STAFF_GATE, ids=ids),
        page(
            "POST", staff_only(ok(302, writes=writes), STAFF_GATE), STAFF_GATE, ids=ids, body=body
        ),
    ]


def graph_text() -> str:
    return json.dumps(shared_workflow("empty_save"))


def formset_management(total: int, initial: int) -> dict[str, str]:
    prefix = ParameterFormSet.get_default_prefix()
    return {
        f"{prefix}-TOTAL_FORMS": str(total),
        f"{prefix}-INITIAL_FORMS": str(initial),
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1000",
    }


def template_edit_body(ids: dict[str, int]) -> dict[str, str]:
    """New details, and its first parameter deleted (a formset posts the rows it changes)."""
    prefix = ParameterFormSet.get_default_prefix()
    return (
        {"name": f"Template {MARKER}", "description": "changed"}
        | formset_management(1, 1)
        | {f"{prefix}-0-id": str(ids["parameter"]), f"{prefix}-0-DELETE": "on"}
    )


def submit_body(action: str) -> Body:
    return lambda ids: {
        "action": action,
        "priority": str(Priority.NORMAL),
        "mode": "count",
        "count": "1",
        "p_width": "64",
    }


def nothing(ids: dict[str, int]) -> dict[str, Any]:
    return {}


def team_a(ids: dict[str, int]) -> dict[str, Any]:
    return {"team": ids["team"]}


whole_queue = nothing


# Cancelling: a pending task at once; one that has ended is left as it is. (Tasks on a
# server are not cancelled here: that asks their server, which is not there.)
CANCELS = {
    "pending": ok(302, writes=True),
    **{state: ok(302) for state in ("completed", "failed", "canceled")},
}

# Retrying: a failed or canceled task goes back to the queue; any other is left as it is.
RETRIES = {state: ok(302, writes=state in ("failed", "canceled")) for state in TASK_STATES}


def live_parts(ids: dict[str, int]) -> dict[str, Any]:
    return {"parts": "live"}


OK_PAGE = ok(200)
OK_LIST = ok(200, marker=True)
WRITE = ok(302, writes=True)
READ_POST = ok(200)  # a POST that only reads (validate, preview): changes nothing

PAGES: dict[str, list[Case]] = {
    # Public, or about the user themselves.
    "login": [
        page("GET", signed_in(ok(302)), anonymous=ok(200)),
        page("POST", signed_in(ok(302)), anonymous=ok(200), body=nothing),
    ],
    "healthz": [
        page("GET", signed_in(ok(200, 503)), anonymous=ok(200, 503)),
        page("POST", signed_in(NOT_ALLOWED), anonymous=NOT_ALLOWED),
    ],
    # Prometheus scrapes without a session: the test client is on loopback, an allowed
    # network by default (test_metrics.py covers tokens and other networks).
    "metrics": [
        page("GET", signed_in(ok(200)), anonymous=ok(200)),
        page("POST", signed_in(NOT_ALLOWED), anonymous=NOT_ALLOWED),
    ],
    "favicon": [
        page("GET", signed_in(ok(301)), anonymous=ok(301)),
        page("POST", signed_in(ok(301)), anonymous=ok(301)),
    ],
    "logout": [
        no_method("GET"),
        page("POST", signed_in(ok(302)), anonymous=ok(302)),
    ],
    "dashboard": [page("GET", signed_in(OK_PAGE)), no_method("POST")],
    "account": [page("GET", signed_in(OK_PAGE)), no_method("POST")],
    "password_change": [
        page("GET", signed_in(OK_PAGE)),
        page("POST", signed_in(ok(200)), body=nothing),  # the form's errors
    ],
    "account_token_create": [
        no_method("GET"),
        # Everyone makes tokens of their own.
        page("POST", signed_in(ok(200, writes=True)), body=lambda ids: {"name": "ci"}),
    ],
    "account_token_revoke": [
        no_method("GET", ids={"pk": "admin_token"}),
        # Only its owner (team A's admin) may revoke it; even staff get a 404.
        page(
            "POST",
            dict.fromkeys((*TEAM_ROLES, "stranger", "staff"), HIDDEN) | {"admin": WRITE},
            ids={"pk": "admin_token"},
        ),
    ],
    # The fleet: everyone reads; staff test it and (demo) take it down.
    "servers:list": [page("GET", signed_in(OK_PAGE)), no_method("POST")],
    "servers:detail": [
        page("GET", signed_in(OK_PAGE), ids={"pk": "server"}),
        no_method("POST", ids={"pk": "server"}),
    ],
    "servers:test": [
        page("GET", staff_only(NOT_ALLOWED, STAFF_GATE), STAFF_GATE, ids={"pk": "server"}),
        page("POST", staff_only(ok(302), STAFF_GATE), STAFF_GATE, ids={"pk": "server"}),
    ],
    "servers:outage": [
        page("GET", staff_only(NOT_ALLOWED, STAFF_GATE), STAFF_GATE, ids={"pk": "server"}),
        page("POST", staff_only(ok(302), STAFF_GATE), STAFF_GATE, ids={"pk": "server"}),
    ],
    # Container pools' pages (#13): everyone reads; staff scale pools and stop containers.
    "servers:containers_panel": [page("GET", signed_in(OK_PAGE)), no_method("POST")],
    "servers:pool": [
        page("GET", signed_in(OK_PAGE), ids={"pk": "pool"}),
        no_method("POST", ids={"pk": "pool"}),
    ],
    "servers:pool_panel": [
        page("GET", signed_in(OK_PAGE), ids={"pk": "pool"}),
        no_method("POST", ids={"pk": "pool"}),
    ],
    "servers:pool_scale": staff_post(True, ids={"pk": "pool"}, body=lambda ids: {"size": "1"}),
    "servers:pool_autoscale": staff_post(True, ids={"pk": "pool"}),
    "servers:container_drain": staff_post(True, ids={"pk": "container"}),
    "servers:container_recreate": staff_post(True, ids={"pk": "container"}),
    # Queues the worker's job (the broker is Redis): nothing written here.
    "servers:container_remove": staff_post(False, ids={"pk": "container"}),
    # A local ComfyUI instance's page (#14): staff only; the buttons say what staff want.
    "servers:local": [
        page("GET", staff_only(OK_PAGE, STAFF_GATE), STAFF_GATE, ids={"pk": "local_instance"}),
        page("POST", staff_only(NOT_ALLOWED, STAFF_GATE), STAFF_GATE, ids={"pk": "local_instance"}),
    ],
    "servers:local_add": [
        page("GET", staff_only(OK_PAGE, STAFF_GATE), STAFF_GATE),
        page(
            "POST",
            staff_only(WRITE, STAFF_GATE),
            STAFF_GATE,
            body=lambda ids: {
                "name": "added",
                "comfyui_dir": "/opt/ComfyUI",
                "python": "python3",
                "port": "8293",
                "auto_restart": "on",
            },
        ),
    ],
    "servers:local_edit": [
        page("GET", staff_only(OK_PAGE, STAFF_GATE), STAFF_GATE, ids={"pk": "local_instance"}),
        page(
            "POST",
            staff_only(WRITE, STAFF_GATE),
            STAFF_GATE,
            ids={"pk": "local_instance"},
            body=lambda ids: {
                "name": "edited",
                "comfyui_dir": "/opt/ComfyUI",
                "python": "python3",
                "port": "8294",
                "args": "--lowvram",
            },
        ),
    ],
    "servers:local_delete": staff_post(True, ids={"pk": "spare_local_instance"}),
    "servers:local_start": staff_post(True, ids={"pk": "local_instance"}),
    "servers:local_stop": staff_post(True, ids={"pk": "local_instance"}),
    "servers:local_restart": staff_post(True, ids={"pk": "local_instance"}),
    # The models library (#14): everyone reads; staff add, cancel and retry downloads.
    "library:downloads": [
        page("GET", signed_in(OK_PAGE)),
        page(
            "POST",
            staff_only(WRITE),
            body=lambda ids: {
                "url": "http://127.0.0.1:9/files/page.safetensors",
                "folder": "checkpoints",
                "connections": "4",
            },
        ),
    ],
    "library:downloads_panel": [page("GET", signed_in(OK_PAGE)), no_method("POST")],
    "library:download_cancel": staff_post(True, ids={"pk": "download"}),
    "library:download_retry": staff_post(True, ids={"pk": "failed_download"}),
    # Fairness limits (issue 18): the team's members read them; its admins change them.
    "fairness:limits": [
        page("GET", signed_in(OK_PAGE)),
        page("GET", team_object("viewer", OK_LIST), query=team_a, label="team-a"),
        page(
            "POST",
            team_object("admin", WRITE),
            body=lambda ids: {"team": ids["team"], "action": "team", "max_queued": "50"},
        ),
    ],
    # GPU-time usage (issue 18): a team's members read theirs (their first team by default).
    **{
        name: [
            page("GET", signed_in(OK_PAGE)),
            page("GET", team_object("viewer", shown), query=team_a, label="team-a"),
            no_method("POST"),
        ]
        for name, shown in (
            ("accounting:usage", OK_LIST),
            ("accounting:report", OK_PAGE),
            ("accounting:export", OK_PAGE),
        )
    },
    # Webhooks (issue 18): the team reads its endpoints and logs; its admins change them.
    "webhooks:list": [
        page("GET", signed_in(OK_LIST)),
        page(
            "POST",
            team_object("admin", ok(200, writes=True)) | {"stranger": ok(200)},  # not a choice
            body=lambda ids: {
                "team": str(ids["team"]),
                "url": "https://hooks.example.com/new",
                "events": "task.completed",
            },
        ),
    ],
    "webhooks:list_panel": [page("GET", signed_in(OK_LIST)), no_method("POST")],
    "webhooks:submission_secret": [
        no_method("GET"),
        page("POST", team_object("admin", ok(200, writes=True)), body=team_a),
    ],
    **{
        name: [
            page("GET", team_object("viewer", shown), ids={"pk": "webhook"}),
            no_method("POST", ids={"pk": "webhook"}),
        ]
        for name, shown in (("webhooks:endpoint", OK_LIST), ("webhooks:endpoint_panel", OK_PAGE))
    },
    "webhooks:endpoint_toggle": [
        no_method("GET", ids={"pk": "webhook"}),
        page("POST", team_object("admin", WRITE), ids={"pk": "webhook"}),
    ],
    "webhooks:endpoint_delete": [
        no_method("GET", ids={"pk": "spare_webhook"}),
        page("POST", team_object("admin", WRITE), ids={"pk": "spare_webhook"}),
    ],
    "webhooks:redeliver": [
        no_method("GET", ids={"pk": "webhook_delivery"}),
        page("POST", team_object("admin", WRITE), ids={"pk": "webhook_delivery"}),
    ],
    # Workflows and templates.
    "workflows:workflows": [
        page("GET", signed_in(OK_LIST)),
        page("GET", signed_in(OK_LIST), query=team_a, label="team-a"),
        page("POST", signed_in(OK_LIST)),  # no method check: a read
    ],
    "workflows:workflow_create": [
        # Viewers may create nowhere; the stranger may, in their own team only.
        page("GET", team_object("member", OK_PAGE) | {"stranger": OK_PAGE}),
        page(
            "POST",
            team_object("member", WRITE) | {"stranger": ok(200)},  # team A: not a choice
            body=lambda ids: {
                "team": str(ids["team"]),
                "name": "New one",
                "graph_text": graph_text(),
            },
        ),
    ],
    "workflows:workflow_detail": [
        page("GET", team_object("viewer", OK_LIST), ids={"pk": "workflow"}),
        page("POST", team_object("viewer", OK_LIST), ids={"pk": "workflow"}),
    ],
    "workflows:workflow_edit": [
        page("GET", team_object("member", OK_PAGE), ids={"pk": "workflow"}),
        page(
            "POST",
            team_object("member", WRITE),
            ids={"pk": "workflow"},
            body=lambda ids: {"name": f"Workflow {MARKER}", "description": "changed"},
        ),
    ],
    "workflows:workflow_delete": [
        # A workflow no task ran: deleting it works (one that ran is kept, refused).
        page("GET", team_object("admin", OK_PAGE), ids={"pk": "spare_workflow"}),
        page("POST", team_object("admin", WRITE), ids={"pk": "spare_workflow"}, body=nothing),
    ],
    "workflows:workflow_validate": [
        no_method("GET", ids={"pk": "workflow"}),
        # No server named: the form's error, rendered; nothing is fetched or saved.
        page("POST", team_object("viewer", READ_POST), ids={"pk": "workflow"}, body=nothing),
    ],
    "tasks:workflow_run": [
        no_method("GET", ids={"pk": "workflow"}),
        page(
            "POST",
            team_object("member", WRITE),
            ids={"pk": "workflow"},
            body=lambda ids: {"priority": str(Priority.NORMAL), "count": "1"},
        ),
    ],
    "workflows:template_create": [
        page("GET", team_object("member", OK_PAGE), ids={"pk": "workflow"}),
        page(
            "POST",
            team_object("member", WRITE),
            ids={"pk": "workflow"},
            body=lambda ids: {"name": "New one", "description": ""} | formset_management(0, 0),
        ),
    ],
    "workflows:templates": [
        page("GET", signed_in(OK_LIST)),
        page("POST", signed_in(OK_LIST)),  # no method check: a read
    ],
    # Generate (#16): every template and workflow of the user's teams, one place to start.
    "workflows:generate": [page("GET", signed_in(OK_LIST)), no_method("POST")],
    **{
        name: [
            page("GET", team_object("viewer", OK_LIST), ids={"pk": "template"}),
            page(
                "POST",
                team_object("viewer", READ_POST),
                ids={"pk": "template"},
                body=submit_body("preview"),
                label="preview",
            ),
            page(
                "POST",
                team_object("member", WRITE),
                ids={"pk": "template"},
                body=submit_body("submit"),
                label="submit",
            ),
        ]
        for name in ("tasks:template_detail", "tasks:template_submit")
    },
    "workflows:template_edit": [
        page("GET", team_object("member", OK_PAGE), ids={"pk": "template"}),
        page("POST", team_object("member", WRITE), ids={"pk": "template"}, body=template_edit_body),
    ],
    "workflows:template_delete": [
        page("GET", team_object("admin", OK_PAGE), ids={"pk": "template"}),
        page("POST", team_object("admin", WRITE), ids={"pk": "template"}, body=nothing),
    ],
    # Tasks, batches, outputs.
    "tasks:tasks": [
        page("GET", signed_in(OK_LIST)),
        page(
            "GET",
            signed_in(OK_LIST),
            query=lambda ids: {"team": ids["team"], "batch": ids["batch"]},
            label="filtered",
        ),
        page("POST", signed_in(OK_LIST)),  # no method check: a read
    ],
    "tasks:task_detail": [
        page(method, team_object("viewer", OK_LIST), ids={"task_id": state}, label=state)
        for method in PAGE_METHODS
        for state in TASK_STATES
    ],
    "tasks:task_preview": [
        page("GET", team_object("viewer", OK_PAGE), ids={"task_id": "running"}),
        page("POST", team_object("viewer", OK_PAGE), ids={"task_id": "running"}),
    ],
    "tasks:task_cancel": [
        no_method("GET", ids={"task_id": "pending"}),
        *(
            page("POST", team_object("member", canceled), ids={"task_id": state}, label=state)
            for state, canceled in CANCELS.items()
        ),
    ],
    "tasks:batch_cancel": [
        no_method("GET", ids={"batch_id": "batch"}),
        page("POST", team_object("member", WRITE), ids={"batch_id": "batch"}, body=nothing),
    ],
    # Batches as units and Retry / Run again (issue 16). The world's batch has a pending
    # and a completed task: nothing in it to retry.
    "tasks:batch_detail": [
        page("GET", team_object("viewer", OK_LIST), ids={"batch_id": "batch"}),
        page("GET", team_object("viewer", OK_PAGE), ids={"batch_id": "batch"}, query=live_parts),
        no_method("POST", ids={"batch_id": "batch"}),
    ],
    "tasks:batch_retry": [
        no_method("GET", ids={"batch_id": "batch"}),
        page("POST", team_object("member", ok(302)), ids={"batch_id": "batch"}, body=nothing),
    ],
    "tasks:batch_run_again": [
        no_method("GET", ids={"batch_id": "batch"}),
        page("POST", team_object("member", WRITE), ids={"batch_id": "batch"}, body=nothing),
    ],
    "tasks:task_retry": [
        no_method("GET", ids={"task_id": "failed"}),
        *(
            page("POST", team_object("member", retried), ids={"task_id": state}, label=state)
            for state, retried in RETRIES.items()
        ),
    ],
    "tasks:task_run_again": [
        no_method("GET", ids={"task_id": "completed"}),
        *(
            page("POST", team_object("member", WRITE), ids={"task_id": state}, label=state)
            for state in TASK_STATES
        ),
    ],
    "tasks:gallery": [
        page("GET", signed_in(OK_LIST)),
        page("GET", signed_in(OK_LIST), query=team_a, label="team-a"),
        no_method("POST"),
    ],
    "tasks:output_detail": [
        page("GET", team_object("viewer", OK_LIST), ids={"pk": "output"}),
        no_method("POST", ids={"pk": "output"}),
    ],
    # New outputs for the gallery's script (after=0: all of them) and the dashboard's
    # recent results: lists, so only the stranger sees nothing of team A.
    "tasks:gallery_items": [
        page("GET", signed_in(OK_LIST), query=lambda ids: {"after": 0}),
        no_method("POST"),
    ],
    "tasks:recent_results": [page("GET", signed_in(OK_LIST)), no_method("POST")],
    # Expected times of the tasks and batch a page shows: ids of other teams are left out.
    "tasks:eta_parts": [
        page(
            "GET",
            signed_in(OK_PAGE),
            query=lambda ids: {"task": ids["pending"], "batch": ids["batch"]},
        ),
        no_method("POST"),
    ],
    # A task list's live cells (state, pictures): other teams' ids are left out.
    "tasks:row_parts": [
        page("GET", signed_in(OK_PAGE), query=lambda ids: {"task": ids["pending"]}),
        no_method("POST"),
    ],
    # A zip of outputs: a read, so viewers may; another team's output is a 404.
    "tasks:gallery_zip": [
        no_method("GET"),
        page("POST", team_object("viewer", OK_PAGE), body=lambda ids: {"ids": [ids["output"]]}),
    ],
    **{
        name: [
            page("GET", team_object("viewer", OK_PAGE), ids={"output_id": "output"}),
            page("POST", team_object("viewer", OK_PAGE), ids={"output_id": "output"}),
        ]
        for name in ("tasks:output_file", "tasks:output_thumbnail")
    },
    # The first-run checklist (#16): everyone hides their own.
    "onboarding:dismiss": [
        no_method("GET"),
        page("POST", signed_in(ok(302, writes=True)), body=nothing),
    ],
    # The queue: a team's admins control theirs, staff everyone's.
    "tasks:queue_panel": [page("GET", signed_in(OK_PAGE)), no_method("POST")],
    **{
        name: [
            no_method("GET"),
            page("POST", team_object("admin", ok(302, writes=changes)), body=team_a, label="team"),
            page("POST", staff_only(ok(302, writes=changes)), body=whole_queue, label="all"),
        ]
        for name, changes in (
            ("tasks:queue_pause", True),
            ("tasks:queue_resume", None),  # nothing is paused: nothing to lift
            ("tasks:queue_clear", True),
        )
    },
    # The API's schema and docs (its operations are OPERATIONS).
    **{
        name: [page(method, signed_in(OK_PAGE), anonymous) for method in PAGE_METHODS]
        for name, anonymous in (("api:openapi-json", UNAUTHORIZED), ("api:openapi-view", LOGIN))
    },
    "api:api-root": [
        page("GET", signed_in(HIDDEN), anonymous=HIDDEN),
        page("POST", signed_in(HIDDEN), anonymous=HIDDEN),
    ],
}

OK_API = ok(200)
CREATED = ok(201, writes=True)
CHANGED = ok(200, writes=True)
DELETED = ok(204, writes=True)


def task_source(source: str) -> Body:
    def body(ids: dict[str, int]) -> dict[str, Any]:
        if source == "graph":
            return {"graph": shared_workflow("empty_save"), "team": ids["team"]}
        return {source: ids[source]}

    return body


OPERATIONS: dict[str, list[Case]] = {
    "GET /api/v1/health": [op(signed_in(OK_API))],
    # The fleet: everyone reads it, staff change it (403 to all others: it is no team's).
    "GET /api/v1/servers": [op(signed_in(OK_API))],
    "POST /api/v1/servers": [
        op(staff_only(CREATED), body=lambda ids: {"name": "new-gpu", "url": "http://127.0.0.1:9"})
    ],
    "GET /api/v1/servers/{server_id}": [op(signed_in(OK_API), ids={"server_id": "server"})],
    "PATCH /api/v1/servers/{server_id}": [
        op(staff_only(CHANGED), ids={"server_id": "server"}, body=lambda ids: {"priority": 7})
    ],
    "DELETE /api/v1/servers/{server_id}": [
        op(staff_only(DELETED), ids={"server_id": "spare_server"})  # one with no work on it
    ],
    "POST /api/v1/servers/{server_id}/test": [op(staff_only(OK_API), ids={"server_id": "server"})],
    # Docker hosts (#13): as the fleet. Checking one writes what its engine said.
    "GET /api/v1/docker-hosts": [op(signed_in(OK_API))],
    "POST /api/v1/docker-hosts": [
        op(
            staff_only(CREATED),
            body=lambda ids: {"name": "new-docker", "docker_url": "unix:///nonexistent.sock"},
        )
    ],
    "GET /api/v1/docker-hosts/{host_id}": [op(signed_in(OK_API), ids={"host_id": "docker_host"})],
    "PATCH /api/v1/docker-hosts/{host_id}": [
        op(
            staff_only(CHANGED),
            ids={"host_id": "docker_host"},
            body=lambda ids: {"port_max": 20050},
        )
    ],
    "DELETE /api/v1/docker-hosts/{host_id}": [
        op(staff_only(DELETED), ids={"host_id": "spare_docker_host"})  # no containers on it
    ],
    "POST /api/v1/docker-hosts/{host_id}/check": [
        op(staff_only(CHANGED), ids={"host_id": "docker_host"})
    ],
    # Container pools (#13): as the fleet. Deleting one with a container drains it (202).
    "GET /api/v1/pools": [op(signed_in(OK_API))],
    "POST /api/v1/pools": [
        op(staff_only(CREATED), body=lambda ids: {"name": "new-pool", "image": "comfyui:test"})
    ],
    "GET /api/v1/pools/{pool_id}": [op(signed_in(OK_API), ids={"pool_id": "pool"})],
    "PATCH /api/v1/pools/{pool_id}": [
        op(staff_only(CHANGED), ids={"pool_id": "pool"}, body=lambda ids: {"max_size": 3})
    ],
    "POST /api/v1/pools/{pool_id}/scale": [
        op(staff_only(CHANGED), ids={"pool_id": "pool"}, body=lambda ids: {"size": 1})
    ],
    "DELETE /api/v1/pools/{pool_id}": [
        op(staff_only(DELETED), ids={"pool_id": "spare_pool"}),  # no containers: at once
        op(staff_only(ok(202, writes=True)), ids={"pool_id": "pool"}, label="draining"),
    ],
    # Local ComfyUI instances (#14): staff only, reading included (they name paths and
    # processes of the machine). Start, stop and restart write what staff want.
    "GET /api/v1/local-instances": [op(staff_only(OK_API))],
    "POST /api/v1/local-instances": [
        op(
            staff_only(CREATED),
            body=lambda ids: {"name": "new-local", "comfyui_dir": "/opt/ComfyUI", "port": 8292},
        )
    ],
    "GET /api/v1/local-instances/{instance_id}": [
        op(staff_only(OK_API), ids={"instance_id": "local_instance"})
    ],
    "PATCH /api/v1/local-instances/{instance_id}": [
        op(
            staff_only(CHANGED),
            ids={"instance_id": "local_instance"},
            body=lambda ids: {"autostart": True},
        )
    ],
    "DELETE /api/v1/local-instances/{instance_id}": [
        op(staff_only(DELETED), ids={"instance_id": "spare_local_instance"})
    ],
    "POST /api/v1/local-instances/{instance_id}/start": [
        op(staff_only(CHANGED), ids={"instance_id": "local_instance"})
    ],
    "POST /api/v1/local-instances/{instance_id}/stop": [
        op(staff_only(CHANGED), ids={"instance_id": "local_instance"})
    ],
    "POST /api/v1/local-instances/{instance_id}/restart": [
        op(staff_only(CHANGED), ids={"instance_id": "local_instance"})
    ],
    "GET /api/v1/local-instances/{instance_id}/logs": [
        op(staff_only(OK_API), ids={"instance_id": "local_instance"})
    ],
    # The models library (#14): as the fleet. Cancelling answers the download.
    "GET /api/v1/downloads": [op(signed_in(OK_API))],
    "POST /api/v1/downloads": [
        op(
            staff_only(CREATED),
            body=lambda ids: {
                "url": "http://127.0.0.1:9/files/api.safetensors",
                "folder": "checkpoints",
            },
        )
    ],
    "GET /api/v1/downloads/{download_id}": [op(signed_in(OK_API), ids={"download_id": "download"})],
    "DELETE /api/v1/downloads/{download_id}": [
        op(staff_only(CHANGED), ids={"download_id": "download"})
    ],
    "POST /api/v1/downloads/{download_id}/retry": [
        op(staff_only(CHANGED), ids={"download_id": "failed_download"})
    ],
    "GET /api/v1/models": [op(signed_in(OK_API))],
    # Workflows.
    "GET /api/v1/workflows": [
        op(signed_in(OK_LIST)),
        op(signed_in(OK_LIST), query=team_a, label="team-a"),
    ],
    "POST /api/v1/workflows": [
        op(
            team_object("member", CREATED),
            body=lambda ids: {
                "name": "New one",
                "graph": shared_workflow("empty_save"),
                "team": ids["team"],
            },
        )
    ],
    "GET /api/v1/workflows/{workflow_id}": [
        op(team_object("viewer", OK_LIST), ids={"workflow_id": "workflow"})
    ],
    "PATCH /api/v1/workflows/{workflow_id}": [
        op(
            team_object("member", CHANGED),
            ids={"workflow_id": "workflow"},
            body=lambda ids: {"description": "changed"},
        )
    ],
    "DELETE /api/v1/workflows/{workflow_id}": [
        op(team_object("admin", DELETED), ids={"workflow_id": "spare_workflow"})
    ],
    "POST /api/v1/workflows/{workflow_id}/validate": [
        op(team_object("viewer", OK_API), ids={"workflow_id": "workflow"}, body=nothing)
    ],
    # Templates.
    "GET /api/v1/templates": [op(signed_in(OK_LIST))],
    "POST /api/v1/templates": [
        op(
            team_object("member", CREATED),
            body=lambda ids: {"workflow": ids["workflow"], "name": "New one"},
        )
    ],
    "GET /api/v1/templates/{template_id}": [
        op(team_object("viewer", OK_LIST), ids={"template_id": "template"})
    ],
    "PATCH /api/v1/templates/{template_id}": [
        op(
            team_object("member", CHANGED),
            ids={"template_id": "template"},
            body=lambda ids: {"description": "changed"},
        )
    ],
    "DELETE /api/v1/templates/{template_id}": [
        op(team_object("admin", DELETED), ids={"template_id": "template"})
    ],
    "POST /api/v1/templates/{template_id}/preview": [
        op(
            team_object("viewer", OK_API),
            ids={"template_id": "template"},
            body=lambda ids: {"params": {"width": 64}},
        )
    ],
    # Tasks and batches.
    "POST /api/v1/tasks": [
        op(team_object("member", CREATED), body=task_source(source), label=source)
        for source in ("workflow", "template", "graph")
    ],
    "GET /api/v1/tasks": [
        op(signed_in(OK_LIST)),
        op(
            signed_in(OK_LIST),
            query=lambda ids: {"team": ids["team"], "batch": ids["batch"]},
            label="filtered",
        ),
    ],
    "GET /api/v1/tasks/{task_id}": [
        op(team_object("viewer", OK_LIST), ids={"task_id": state}, label=state)
        for state in TASK_STATES
    ],
    "POST /api/v1/tasks/{task_id}/cancel": [
        op(team_object("member", ok(200, writes=canceled.writes)), ids={"task_id": s}, label=s)
        for s, canceled in CANCELS.items()
    ],
    "POST /api/v1/batches/{batch_id}/cancel": [
        op(team_object("member", CHANGED), ids={"batch_id": "batch"})
    ],
    "GET /api/v1/batches/{batch_id}": [
        op(team_object("viewer", OK_LIST), ids={"batch_id": "batch"})
    ],
    "POST /api/v1/batches/{batch_id}/retry": [
        op(team_object("member", OK_API), ids={"batch_id": "batch"})  # nothing to retry
    ],
    "POST /api/v1/batches/{batch_id}/run-again": [
        op(team_object("member", CREATED), ids={"batch_id": "batch"})
    ],
    "POST /api/v1/tasks/{task_id}/retry": [
        op(
            team_object("member", CHANGED if state in ("failed", "canceled") else ok(409)),
            ids={"task_id": state},
            label=state,
        )
        for state in TASK_STATES
    ],
    "POST /api/v1/tasks/{task_id}/run-again": [
        op(team_object("member", CREATED), ids={"task_id": state}, label=state)
        for state in TASK_STATES
    ],
    # A finished task: its stream opens with its state and ends (an unfinished one's
    # streams until it finishes). Only the status is checked, the body not read.
    "GET /api/v1/tasks/{task_id}/events": [
        op(team_object("viewer", OK_API), ids={"task_id": state}, label=state)
        for state in ("completed", "failed", "canceled")
    ],
    "GET /api/v1/outputs/{output_id}/file": [
        op(team_object("viewer", OK_API), ids={"output_id": "output"})
    ],
    "POST /api/v1/outputs/zip": [
        op(team_object("viewer", OK_API), body=lambda ids: {"ids": [ids["output"]]})
    ],
    # Webhooks (issue 18): the team reads; its admins add, delete and redeliver.
    "GET /api/v1/webhooks": [op(signed_in(OK_LIST))],
    "POST /api/v1/webhooks": [
        op(
            team_object("admin", CREATED),
            body=lambda ids: {"url": "https://hooks.example.com/api", "team": ids["team"]},
        )
    ],
    "DELETE /api/v1/webhooks/{webhook_id}": [
        op(team_object("admin", DELETED), ids={"webhook_id": "spare_webhook"})
    ],
    "GET /api/v1/webhooks/{webhook_id}/deliveries": [
        op(team_object("viewer", OK_LIST), ids={"webhook_id": "webhook"})
    ],
    "POST /api/v1/webhooks/deliveries/{delivery_id}/redeliver": [
        op(team_object("admin", CHANGED), ids={"delivery_id": "webhook_delivery"})
    ],
    # The queue.
    "GET /api/v1/queue": [op(signed_in(OK_API))],
    # GPU-time usage: your teams' (staff: everyone's); another team's is a 404.
    "GET /api/v1/usage": [
        op(signed_in(OK_API)),
        op(team_object("viewer", OK_API), query=team_a, label="team-a"),
    ],
    **{
        f"POST /api/v1/queue/{action}": [
            op(team_object("admin", ok(200, writes=changes)), body=team_a, label="team"),
            op(staff_only(ok(200, writes=changes)), body=whole_queue, label="all"),
        ]
        for action, changes in (("pause", True), ("resume", None), ("clear", True))
    },
}


# The Django admin is walked under one rule of its own (a new ModelAdmin needs no entry):
def admin_expect(name: str, role: str) -> Expect:
    if name == "admin:login":  # public; staff are sent on to the index
        return ok(200, 302) if role == "staff" else ok(200)
    if name == "admin:logout":  # anyone may log out (a session, no table, changes)
        return Expect((200, 302, 405))
    if role == "anonymous":
        return Expect((302,), redirect_to=("/login/", "/admin/login/"))
    if role != "staff":
        return STAFF_GATE  # team roles, team admins included, are not site admins
    # Staff without model permissions see the index and are refused the rest.
    return Expect((200, 302, 403, 404, 405))
