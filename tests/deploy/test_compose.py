"""deploy/compose.yaml and deploy/nginx.conf say what README "Running at scale"
promises: two of each ComfyWeb process, one set of settings from deploy/.env, and a
proxy that upgrades the live socket and balances over every web process.

Docker cannot run here, so these read the files; a variable compose sets that no
setting reads, or a proxy that drops the Upgrade header, fails here instead of in
someone's deployment."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from tests.deploy import nginx_conf

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = "deploy/Dockerfile"
SCALED_PROCESSES = ("web", "worker", "monitor")
# `${NAME}`, `${NAME:-default}` or `${NAME:?error}`: compose fills these from deploy/.env.
INTERPOLATION = re.compile(r"\$\{(\w+)(?::?[-?][^}]*)?\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def app_services(services) -> dict:
    """Every service run from ComfyWeb's own image."""
    return {
        name: service
        for name, service in services.items()
        if service.get("build", {}).get("dockerfile") == DOCKERFILE
    }


@pytest.fixture(scope="module")
def nginx() -> nginx_conf.Directive:
    return nginx_conf.parse((DEPLOY / "nginx.conf").read_text())


def settings_environment_variables() -> set[str]:
    """Names comfyweb/settings.py reads: the first argument of each env_* helper call."""
    tree = ast.parse((ROOT / "comfyweb" / "settings.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
            continue
        reader = node.func.id.startswith("env_") or node.func.id == "origin_list"
        if reader and node.args and isinstance(node.args[0], ast.Constant):
            names.add(node.args[0].value)
    return names


def test_two_web_two_worker_and_two_monitor_processes_run_their_commands(services):
    assert {name: services[name]["deploy"]["replicas"] for name in SCALED_PROCESSES} == {
        "web": 2,
        "worker": 2,
        "monitor": 2,
    }
    web = services["web"]["command"]
    assert web[:3] == ["python", "-m", "daphne"]
    assert web[-1] == "comfyweb.asgi:application"
    # Reached by nginx from another container: not loopback.
    assert web[web.index("--bind") + 1] == "0.0.0.0"  # noqa: S104
    assert services["worker"]["command"] == ["python", "manage.py", "qcluster"]
    assert services["monitor"]["command"] == ["python", "manage.py", "monitor"]


def test_worker_is_given_time_to_finish_running_jobs_when_stopped(services):
    # qcluster lets a job run up to 300 s after SIGTERM (Q_CLUSTER timeout).
    assert services["worker"]["stop_grace_period"] == "330s"


def test_every_comfyweb_process_gets_one_set_of_settings(app_services):
    assert set(app_services) == {"migrate", *SCALED_PROCESSES}
    environments = [service["environment"] for service in app_services.values()]
    assert all(environment == environments[0] for environment in environments)


def test_database_redis_and_secret_key_come_from_the_env_file(app_services, services):
    environment = app_services["web"]["environment"]
    assert INTERPOLATION.fullmatch(environment["SECRET_KEY"]).group(1) == "SECRET_KEY"
    assert "${POSTGRES_PASSWORD:?" in environment["DATABASE_URL"]
    assert environment["DATABASE_URL"].startswith("postgres://comfyweb:")
    assert environment["DATABASE_URL"].endswith("@postgres:5432/comfyweb")
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith(
        "${POSTGRES_PASSWORD:?"
    )
    assert environment["REDIS_URL"] == "redis://redis:6379/0"


def test_no_secret_is_written_in_the_compose_file(app_services, services):
    secrets = {"SECRET_KEY", "COMFYWEB_METRICS_TOKEN"}
    environment = app_services["web"]["environment"]
    for name in secrets:
        assert INTERPOLATION.fullmatch(environment[name]).group(1) == name
    assert ".env" in (DEPLOY / ".gitignore").read_text().split()


def test_every_variable_the_compose_file_needs_is_in_the_example_env_file():
    needed = set(INTERPOLATION.findall((DEPLOY / "compose.yaml").read_text()))
    example = (DEPLOY / "env.example").read_text()
    listed = {line.split("=", 1)[0] for line in example.splitlines() if "=" in line}
    listed = {name for name in listed if not name.startswith("#")}
    assert needed <= listed, f"env.example does not name {sorted(needed - listed)}"


def test_every_variable_set_for_comfyweb_is_one_settings_read(app_services):
    read = settings_environment_variables()
    assert {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "COMFYWEB_DATA_DIR"} <= read
    for name, service in app_services.items():
        unread = set(service["environment"]) - read
        assert not unread, f"{name} sets {sorted(unread)}, which comfyweb/settings.py never reads"


def test_comfyweb_processes_start_after_migrations_succeeded(services):
    for name in SCALED_PROCESSES:
        assert services[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }
    migrate = services["migrate"]
    assert migrate["command"] == ["python", "manage.py", "migrate", "--no-input"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"] == {"condition": "service_healthy"}


def test_outputs_are_on_one_volume_that_web_and_worker_share(compose, app_services):
    data_dir = app_services["web"]["environment"]["COMFYWEB_DATA_DIR"]
    mounts = {
        name: {volume.rsplit(":", 1)[1]: volume.split(":", 1)[0] for volume in s["volumes"]}
        for name, s in app_services.items()
    }
    assert mounts["web"][data_dir] == mounts["worker"][data_dir]
    assert mounts["web"][data_dir] in compose["volumes"]  # named, so it outlives containers


def test_image_runs_as_an_unprivileged_user():
    lines = (DEPLOY / "Dockerfile").read_text().splitlines()
    assert [line for line in lines if line.startswith("FROM ")] == ["FROM python:3.12-slim"]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users
    assert users[-1] not in {"root", "0"}


def test_proxy_upgrades_the_live_socket_to_a_websocket(nginx):
    http = nginx.one("http")
    server = http.one("server")
    ws = server.one("location", "/ws/")
    headers = {args[0]: args[1] for args in ws.values("proxy_set_header")}
    assert headers["Upgrade"] == "$http_upgrade"
    assert headers["Connection"] == "$connection_upgrade"
    assert ["1.1"] in server.values("proxy_http_version") + ws.values("proxy_http_version")
    upgrade_map = http.one("map", "$http_upgrade", "$connection_upgrade")
    assert upgrade_map.values("default") == [["upgrade"]]
    # A location that sets headers inherits none from the server: the host must be there too.
    assert headers["Host"] == "$http_host"


def test_proxy_balances_over_every_web_process(nginx, services):
    http = nginx.one("http")
    upstream_name = http.one("upstream").args[0]
    upstream = http.one("upstream", upstream_name)
    web_command = services["web"]["command"]
    web_port = web_command[web_command.index("--port") + 1]
    # One name, every replica's address: Docker's DNS answers `web` with all of them.
    assert upstream.values("server") == [[f"web:{web_port}", "resolve"]]
    assert http.values("resolver")[0][0] == "127.0.0.11"
    server = http.one("server")
    for location in server.find("location"):
        assert location.values("proxy_pass") == [[f"http://{upstream_name}"]]
    assert services["proxy"]["volumes"] == ["./nginx.conf:/etc/nginx/nginx.conf:ro"]
