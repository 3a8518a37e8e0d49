"""Production settings pass Django's deployment check, and HTTPS rules spare /healthz."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The README's "Running in production" environment (no database or Redis is
# contacted by `check`).
PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "a-long-random-production-secret-key-0123456789-abcdefghijklmnop",
    "ALLOWED_HOSTS": "comfy.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://comfy.example.com",
    "BEHIND_TLS_PROXY": "true",
    "SECURE_COOKIES": "true",
}


def check_deploy(tmp_path: Path, **environ: str) -> str:
    env = {"PATH": "/usr/bin:/bin", "COMFYWEB_DATA_DIR": str(tmp_path)} | environ
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "ERROR"],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def test_the_readmes_production_settings_raise_no_https_warnings(tmp_path):
    report = check_deploy(tmp_path, **PRODUCTION)
    for warning in ("W004", "W008", "W012", "W016"):  # HSTS, SSL redirect, secure cookies
        assert warning not in report, report


def test_without_a_tls_proxy_nothing_forces_https(tmp_path):
    report = check_deploy(tmp_path, **(PRODUCTION | {"BEHIND_TLS_PROXY": "false"}))
    assert "W004" in report  # said, not silently on: a LAN install speaks plain HTTP
    assert "W008" in report


@pytest.mark.django_db
def test_the_health_check_is_not_redirected_to_https(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/healthz").status_code in (200, 503)
    assert client.get("/accounts/login/").status_code == 301
