"""Every page and every API operation, as every role, against team A's objects (issue #11).

The pages come from the URL resolver (test_login_required's walker), the operations
from the OpenAPI schema (as in test_api_auth); what each role gets is the table in
authorization_table.py, and a URL or operation missing from it fails
`test_every_route_and_operation_is_in_the_table`, saying what to add.

Each request's SQL is captured: a refused one (401/403/404/405, a login redirect)
must not write at all, an allowed write must (proof that its body was valid, so
the refusals are about the role, not the body); reads write nothing either. The
stranger's answers must never name team A's objects (their names carry MARKER),
and lists must name them for team A's roles.

The world is built once for the module inside a transaction rolled back at its
end; each request runs in a savepoint rolled back after it, so every request sees
the same world. The Django admin is walked too, under a rule of its own.
"""

from __future__ import annotations

import functools
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.core.files.base import ContentFile
from django.core.signals import request_finished
from django.db import close_old_connections, connection, transaction
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from PIL import Image

from api.api import api
from api.models import ApiToken
from api.tokens import issue_token
from library.models import Download, DownloadState
from servers.containers.models import Container
from servers.local.models import LocalInstance
from servers.models import FleetSettings, ServerKind
from tasks import previews
from tasks.models import Batch, Output, Status
from teams.models import Role
from tests.api.callers import Caller
from tests.comfyweb.authorization_table import (
    MARKER,
    OPERATIONS,
    PAGE_METHODS,
    PAGES,
    ROLES,
    TASK_STATES,
    Case,
    Expect,
    admin_expect,
)
from tests.comfyweb.test_login_required import all_routes
from tests.factories import (
    empty_save_template,
    make_docker_host,
    make_pool,
    make_server,
    make_task,
    make_team,
    make_user,
    make_workflow,
    shared_workflow,
)
from webhooks.models import Delivery, DeliveryState, Endpoint
from workflows.models import Workflow

# The world is the module's (below); each test's own transaction is rolled back over it.
pytestmark = pytest.mark.django_db

API_PREFIX = "/api/v1"
# Routes of the API outside its operations: the schema, the docs page, the bare root.
API_DOCS = {"api:openapi-json", "api:openapi-view", "api:api-root"}
TABLE = "PAGES or OPERATIONS in tests/comfyweb/authorization_table.py"


# --- The routes and operations there are -------------------------------------


@functools.cache
def page_routes() -> dict[str, str]:
    """Route name -> route, every one the resolver knows but the admin's."""
    return {name: route for name, route in all_routes() if not name.startswith("admin:")}


def admin_routes() -> list[tuple[str, str]]:
    return [(name, route) for name, route in all_routes() if name.startswith("admin:")]


def schema_operations() -> set[str]:
    schema = api.get_openapi_schema(path_prefix=API_PREFIX)
    return {
        f"{method.upper()} {path}"
        for path, methods in schema["paths"].items()
        for method in methods
    }


def api_path(route: str) -> str:
    """`api/v1/tasks/<task_id>/cancel` -> `/api/v1/tasks/{task_id}/cancel`."""
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)


def fill(route: str, values: dict[str, str]) -> str:
    """A resolver route or a schema path with its parameters replaced by `values`."""

    def value(match: re.Match) -> str:
        return values[match.group("name")]

    route = route.replace("^", "").replace("$", "").replace("\\Z", "")
    route = re.sub(r"<(?:\w+:)?(?P<name>\w+)>", value, route)
    route = re.sub(r"\(\?P<(?P<name>\w+)>[^)]*\)", value, route)
    route = re.sub(r"\{(?P<name>\w+)\}", value, route)
    return route if route.startswith("/") else "/" + route


def test_every_route_and_operation_is_in_the_table():
    """A new page or API operation must say in the table what each role gets."""
    routes = page_routes()
    operations = schema_operations()
    schema_paths = {key.split(" ", 1)[1] for key in operations}
    api_routes = {name for name in routes if name.startswith("api:") and name not in API_DOCS}
    problems = []
    if missing := sorted(set(routes) - set(PAGES) - api_routes):
        problems.append(
            f"Pages with no authorization expectations: {missing}. Add each to {TABLE}: "
            "the objects its path names, and what every role gets for GET and POST."
        )
    if missing := sorted(operations - set(OPERATIONS)):
        problems.append(
            f"API operations with no authorization expectations: {missing}. Add each to "
            f"{TABLE}: the objects its path names, a valid body, and what every role gets."
        )
    # An API URL outside the schema would escape the walk over operations.
    if hidden := sorted(name for name in api_routes if api_path(routes[name]) not in schema_paths):
        problems.append(f"API routes missing from the OpenAPI schema: {hidden}")
    if stale := sorted(set(PAGES) - set(routes)) + sorted(set(OPERATIONS) - operations):
        problems.append(f"Entries of {TABLE} for routes that no longer exist: {stale}")
    problems += [
        f"{name}: give it a {method} case (a page answers every method somehow)"
        for name, cases in PAGES.items()
        for method in PAGE_METHODS
        if method not in {case.method for case in cases}
    ]
    problems += [
        f"{key}: give every role an expectation"
        for key, cases in [*PAGES.items(), *OPERATIONS.items()]
        for case in cases
        if set(case.rules) != set(ROLES)
    ]
    assert not problems, "\n".join(problems)


# --- The world -----------------------------------------------------------------

# What a request wrote: every INSERT, UPDATE and DELETE it sent, but those that only
# record use (its session, a token's last use).
WRITE_SQL = re.compile(r'^\s*(INSERT INTO|UPDATE|DELETE FROM)\s+"?(\w+)"?', re.IGNORECASE)
USE_ONLY = ('"django_session"', 'UPDATE "api_apitoken" SET "last_used_at"')


def writes(queries: list[dict[str, str]]) -> list[str]:
    found = []
    for query in queries:
        match = WRITE_SQL.match(query["sql"])
        if match and not any(use in query["sql"] for use in USE_ONLY):
            found.append(f"{match[1].split()[0].upper()} {match[2]}")
    return found


@dataclass
class World:
    ids: dict[str, int]
    sessions: dict[str, str]  # role -> session key
    tokens: dict[str, str]  # role -> API token
    # One client for all requests: a new one loads the middleware again (slow).
    client: Client = field(default_factory=Client)


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 2), "green").save(buffer, "PNG")
    return buffer.getvalue()


def build_world() -> World:
    team, other = make_team(f"Team {MARKER}"), make_team("Elsewhere")
    users = {
        "viewer": make_user("vic", team=team, role=Role.VIEWER),
        "member": make_user("max", team=team, role=Role.MEMBER),
        "admin": make_user("ada", team=team, role=Role.ADMIN),
        "stranger": make_user("sam", team=other, role=Role.ADMIN),
        "staff": make_user("stef", staff=True),
    }
    server = make_server(name="gpu-shared", kind=ServerKind.SIMULATED)
    spare_server = make_server(name="gpu-spare")
    # A Docker host with a container on it, and one with none (its engine is nowhere).
    docker_host = make_docker_host("docker-shared")
    pool = make_pool("pool-shared")
    container = Container.objects.create(pool=pool, host=docker_host, port=20000)
    spare_docker_host = make_docker_host("docker-spare")
    spare_pool = make_pool("pool-spare")
    # Local ComfyUI instances (stopped: no launcher runs here), one to keep, one to remove.
    local_instance = LocalInstance.objects.create(
        name="local-shared", comfyui_dir="/opt/ComfyUI", port=8290
    )
    spare_local_instance = LocalInstance.objects.create(
        name="local-spare", comfyui_dir="/opt/ComfyUI", port=8291
    )
    # Downloads into the models library: one waiting for a worker, one that failed.
    download = Download.objects.create(
        url="http://127.0.0.1:9/files/queued.safetensors", folder="checkpoints", filename="q.bin"
    )
    failed_download = Download.objects.create(
        url="http://127.0.0.1:9/files/failed.safetensors",
        folder="loras",
        filename="f.bin",
        state=DownloadState.FAILED,
        error="503",
    )
    template = empty_save_template(team)  # its first parameter: width, an int
    version = template.workflow_version
    workflow = version.workflow
    for named in (template, workflow):  # as the markers want them
        named.name = f"{type(named).__name__} {MARKER}"
        named.save(update_fields=["name"])
    spare = make_workflow(team, f"Spare {MARKER}")
    batch = Batch.objects.create(team=team, description=f"Batch {MARKER}")
    work = {"workflow_version": version, "template": template, "params": {"width": 512}}
    tasks = {
        "pending": make_task(
            team, status=Status.PENDING, batch=batch, **work, graph=shared_workflow("empty_save")
        ),
        "completed": make_task(
            team, status=Status.COMPLETED, batch=batch, **work, graph=shared_workflow("empty_save")
        ),
        "failed": make_task(
            team,
            status=Status.FAILED,
            error_message="boom",
            **work,
            graph=shared_workflow("empty_save"),
        ),
        "canceled": make_task(
            team, status=Status.CANCELED, **work, graph=shared_workflow("empty_save")
        ),
        "dispatched": make_task(
            team,
            dispatched_to=server,
            status=Status.DISPATCHED,
            **work,
            graph=shared_workflow("empty_save"),
        ),
        "running": make_task(
            team,
            dispatched_to=server,
            status=Status.RUNNING,
            **work,
            graph=shared_workflow("empty_save"),
        ),
    }
    output = Output(
        task=tasks["completed"], team=team, content_type="image/png", original_name=f"{MARKER}.png"
    )
    data = png()
    output.size = len(data)
    output.file.save("ignored.png", ContentFile(data), save=False)
    output.thumbnail.save("ignored.webp", ContentFile(data), save=False)
    output.save()
    previews.store(tasks["running"].pk, "image/png", data)
    FleetSettings.load()  # pages create it on first read: it exists, as in production
    webhook, spare_webhook, webhook_delivery = webhooks_of(team)

    sessions = {}
    for role, user in users.items():
        client = Client()
        client.force_login(user)
        sessions[role] = client.cookies[settings.SESSION_COOKIE_NAME].value
    tokens = {role: issue_token(user, "matrix")[1] for role, user in users.items()}
    ids = {
        "team": team.pk,
        "server": server.pk,
        "spare_server": spare_server.pk,
        "docker_host": docker_host.pk,
        "spare_docker_host": spare_docker_host.pk,
        "pool": pool.pk,
        "container": container.pk,
        "spare_pool": spare_pool.pk,
        "local_instance": local_instance.pk,
        "spare_local_instance": spare_local_instance.pk,
        "download": download.pk,
        "failed_download": failed_download.pk,
        "workflow": workflow.pk,
        "spare_workflow": spare.pk,
        "template": template.pk,
        "parameter": template.parameters.order_by("position").first().pk,
        "batch": batch.pk,
        "output": output.pk,
        "admin_token": ApiToken.objects.filter(user=users["admin"]).get().pk,
        "webhook": webhook.pk,
        "spare_webhook": spare_webhook.pk,
        "webhook_delivery": webhook_delivery.pk,
        **{state: task.pk for state, task in tasks.items()},
    }
    return World(ids=ids, sessions=sessions, tokens=tokens)


def webhooks_of(team) -> tuple[Endpoint, Endpoint, Delivery]:
    """An endpoint with a delivery, one to delete, and a per-submission delivery."""
    made = [
        Endpoint.objects.create(
            team=team, url=f"https://hooks.example.com/{MARKER}", description=MARKER, secret="x"
        )
        for _ in range(2)
    ]
    now = timezone.now()
    deliveries = [
        Delivery.objects.create(
            team=team,
            endpoint=endpoint,
            url=f"https://hooks.example.com/{MARKER}",
            event_key=f"task.completed:{n}",
            destination=destination,
            event_type="task.completed",
            payload={},
            state=DeliveryState.FAILED,
            created_at=now,
            window_started_at=now,
        )
        for n, (endpoint, destination) in enumerate(((made[0], "endpoint"), (None, "submission")))
    ]
    return made[0], made[1], deliveries[0]


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[World]:
    """Built once; a transaction around the whole module rolls it back at the end."""
    media = override_settings(
        MEDIA_ROOT=tmp_path_factory.mktemp("matrix-media"),
        COMFYWEB_MODELS_DIR=tmp_path_factory.mktemp("matrix-models"),
    )
    with django_db_blocker.unblock(), media:
        outer = transaction.atomic()
        outer.__enter__()
        built = None
        try:
            built = build_world()
            yield built
        finally:
            if built is not None:
                previews.discard(built.ids["running"])
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)


@pytest.fixture(autouse=True)
def streams_keep_the_test_transaction(monkeypatch):
    """The event stream's database_sync_to_async closes "old" connections around each
    call, and one inside a transaction counts as old: it would end the module's world.
    Django's test client keeps the connection across its requests the same way."""
    monkeypatch.setattr("channels.db.close_old_connections", lambda: None)


# --- Sending one request -------------------------------------------------------


@dataclass
class Sent:
    status: int
    location: str
    content: bytes | None  # None for a streamed body (not read)
    written: list[str]  # "UPDATE tasks_task", …


def send(world: World, role: str, method: str, url: str, body: dict | None, *, api: bool) -> Sent:
    """One request in a savepoint rolled back after it: the next sees the same world."""
    client = world.client
    client.cookies.clear()  # no cookie of the last request (a message, a new session)
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        if api:
            response = Caller(client, world.tokens.get(role))(method, url, body)
        else:
            if role in world.sessions:
                client.cookies[settings.SESSION_COOKIE_NAME] = world.sessions[role]
            response = getattr(client, method.lower())(url, body or {})
        content = None if response.streaming else response.content
        if response.streaming:
            close_unread(response)
        transaction.set_rollback(True)
    return Sent(response.status_code, response.get("Location", ""), content, writes(queries))


def close_unread(response) -> None:
    """Close a streamed body left unread (an open file) as a server would, without
    the request_finished handler that drops a connection inside a transaction
    (Django's test client disconnects it the same way)."""
    request_finished.disconnect(close_old_connections)
    try:
        response.close()
    finally:
        request_finished.connect(close_old_connections)


def check(sent: Sent, expect: Expect, role: str, what: str) -> list[str]:
    """What is wrong with one answer (nothing: an empty list)."""
    problems = []
    if sent.status not in expect.statuses:
        problems.append(
            f"answered {sent.status}, expected {' or '.join(map(str, expect.statuses))}"
        )
    elif expect.redirect_to and not sent.location.startswith(expect.redirect_to):
        problems.append(f"redirected to {sent.location}, expected {expect.redirect_to}")
    if expect.writes is not None and bool(sent.written) != expect.writes:
        problems.append(
            f"wrote {sent.written}" if sent.written else "wrote nothing (is its body valid?)"
        )
    if sent.content is not None:
        named = MARKER.encode() in sent.content
        if role in ("anonymous", "stranger") and named:
            problems.append("named an object of team A")
        elif expect.marker and not named:
            problems.append("did not list team A's objects")
    return [f"{what} as {role}: {problem}" for problem in problems]


def cases(table: dict[str, list[Case]], *, pages: bool) -> Iterator[Any]:
    """(key, case, role) for every case of the table and every role, named readably:
    `tasks:task_cancel POST-completed-viewer`, `GET /api/v1/tasks/{task_id}-running-stranger`."""
    for key, entries in table.items():
        for case in entries:
            name = f"{key} {case.method}" if pages else key
            for role in ROLES:
                yield pytest.param(
                    key, case, role, id="-".join(filter(None, (name, case.label, role)))
                )


def _url(world: World, route: str, case: Case) -> str:
    url = fill(route, {param: str(world.ids[obj]) for param, obj in case.ids.items()})
    if case.query is not None:
        url += "?" + "&".join(f"{k}={v}" for k, v in case.query(world.ids).items())
    return url


@pytest.mark.parametrize(("name", "case", "role"), list(cases(PAGES, pages=True)))
def test_page(world, name, case, role):
    route = page_routes()[name]
    url = _url(world, route, case)
    body = case.body(world.ids) if case.body else None
    sent = send(world, role, case.method, url, body, api=False)
    problems = check(sent, case.rules[role], role, f"{case.method} {url}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("key", "case", "role"), list(cases(OPERATIONS, pages=False)))
def test_operation(world, key, case, role):
    method, path = key.split(" ", 1)
    url = _url(world, path, case)
    body = case.body(world.ids) if case.body else None
    sent = send(world, role, method, url, body, api=True)
    problems = check(sent, case.rules[role], role, f"{method} {url}")
    assert not problems, "\n".join(problems)


# --- The Django admin ------------------------------------------------------------


def admin_values(route: str) -> dict[str, str]:
    """Path values for an admin URL: a row of the model it is about, where it has one."""
    values = {"url": "no-such-page/", "app_label": "tasks"}
    match = re.match(r"admin/(\w+)/(\w+)/", route)
    try:
        model = apps.get_model(*match.groups()) if match else None
    except LookupError:  # admin/password_change/done/
        model = None
    pk = model.objects.order_by("pk").values_list("pk", flat=True).first() if model else None
    values["object_id"] = values["id"] = str(pk or 1)
    if "content_type_id" in route:
        values["content_type_id"] = str(ContentType.objects.get_for_model(Workflow).pk)
        values["object_id"] = str(Workflow.objects.order_by("pk").first().pk)
    return values


@pytest.mark.parametrize(("name", "route"), admin_routes(), ids=lambda x: x)
def test_admin(world, name, route):
    url = fill(route, admin_values(route))
    problems = []
    for role in ROLES:
        for method in PAGE_METHODS:
            sent = send(world, role, method, url, {}, api=False)
            expect = admin_expect(name, role)
            problems += check(sent, expect, role, f"{method} {url}")
            if role == "staff" and "login" in sent.location and name != "admin:logout":
                problems.append(f"{method} {url} as staff: sent to log in")  # staff get in
    assert not problems, "\n".join(problems)


def test_the_queue_numbers_leave_out_the_teams_one_is_not_in(world):
    """Counts are not names (MARKER cannot catch them): the stranger's team has no tasks."""
    totals = {}
    for role in ("stranger", "viewer", "staff"):
        sent = send(world, role, "GET", "/api/v1/queue", None, api=True)
        totals[role] = sum(json.loads(sent.content)["counts"].values())
    assert totals == {"stranger": 0, "viewer": len(TASK_STATES), "staff": len(TASK_STATES)}
