from __future__ import annotations

from pathlib import Path

import pytest

from comfyweb.env import (
    ConfigError,
    env_bool,
    env_int,
    env_list,
    env_networks,
    env_path,
    env_str,
    env_url,
    origin_list,
)

DB_SCHEMES = frozenset({"postgres", "sqlite"})


@pytest.mark.parametrize(("raw", "expected"), [("1", True), ("TRUE", True), ("off", False)])
def test_bool_accepts_common_spellings(raw, expected):
    assert env_bool("DEBUG", not expected, environ={"DEBUG": raw}) is expected


def test_bool_rejects_anything_else_naming_the_variable():
    with pytest.raises(ConfigError, match=r"DEBUG='maybe' is not a boolean"):
        env_bool("DEBUG", False, environ={"DEBUG": "maybe"})


def test_unset_or_blank_values_fall_back_to_the_default():
    assert env_bool("DEBUG", True, environ={}) is True
    assert env_str("NAME", "x", environ={"NAME": "   "}) == "x"
    assert env_int("N", 4, environ={"N": ""}) == 4


def test_int_rejects_words_and_values_out_of_range():
    with pytest.raises(ConfigError, match="not a whole number"):
        env_int("WORKER_PROCESSES", 2, environ={"WORKER_PROCESSES": "two"})
    with pytest.raises(ConfigError, match="below the minimum of 1"):
        env_int("WORKER_PROCESSES", 2, minimum=1, environ={"WORKER_PROCESSES": "0"})
    with pytest.raises(ConfigError, match="above the maximum of 64"):
        env_int("WORKER_PROCESSES", 2, maximum=64, environ={"WORKER_PROCESSES": "65"})


def test_list_splits_on_commas_and_drops_blanks():
    hosts = env_list("ALLOWED_HOSTS", [], environ={"ALLOWED_HOSTS": " a.example, ,b.example "})
    assert hosts == ["a.example", "b.example"]


def test_networks_accept_ranges_and_bare_addresses_and_reject_anything_else():
    environ = {"COMFYWEB_METRICS_NETWORKS": "10.0.0.0/8, 192.0.2.7, fd00::/8"}
    networks = env_networks("COMFYWEB_METRICS_NETWORKS", [], environ=environ)
    assert [str(n) for n in networks] == ["10.0.0.0/8", "192.0.2.7/32", "fd00::/8"]
    with pytest.raises(ConfigError, match="COMFYWEB_METRICS_NETWORKS: 'prometheus'"):
        env_networks(
            "COMFYWEB_METRICS_NETWORKS", [], environ={"COMFYWEB_METRICS_NETWORKS": "prometheus"}
        )


def test_url_rejects_unknown_scheme_without_echoing_the_password():
    with pytest.raises(ConfigError) as caught:
        env_url(
            "DATABASE_URL",
            None,
            schemes=DB_SCHEMES,
            environ={"DATABASE_URL": "mysql://app:hunter2@db/app"},
        )
    assert "must start with one of: postgres://, sqlite://" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_url_requires_a_host_for_network_schemes():
    with pytest.raises(ConfigError, match="names no host"):
        env_url("DATABASE_URL", None, schemes=DB_SCHEMES, environ={"DATABASE_URL": "postgres://"})


def test_url_accepts_unix_sockets_with_a_path():
    url = "unix:///run/redis.sock?db=2"
    schemes = frozenset({"unix"})
    assert env_url("REDIS_URL", None, schemes=schemes, environ={"REDIS_URL": url}) == url


def test_origins_must_have_a_scheme():
    with pytest.raises(ConfigError, match="write it as https://host"):
        origin_list("CSRF_TRUSTED_ORIGINS", [], environ={"CSRF_TRUSTED_ORIGINS": "comfy.example"})


def test_data_dir_must_not_be_a_file(tmp_path: Path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(ConfigError, match="not a directory"):
        env_path("COMFYWEB_DATA_DIR", tmp_path, environ={"COMFYWEB_DATA_DIR": str(not_a_dir)})


def test_settings_refuse_to_start_without_a_secret_key_in_production(tmp_path: Path):
    import subprocess
    import sys

    env = {"PATH": "/usr/bin:/bin", "COMFYWEB_DATA_DIR": str(tmp_path), "DEBUG": "false"}
    result = subprocess.run(
        [sys.executable, "-c", "import comfyweb.settings"],
        env=env,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr
