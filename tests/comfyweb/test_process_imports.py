"""What every ComfyWeb process loads (issue 15, goal 7): the installed apps and the
URLconf, but not the web server's Twisted nor the simulator's aiohttp, which only
the processes that run them import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("twisted", "autobahn", "aiohttp")

LOADED = f"""
import sys, django
django.setup()
from django.urls import get_resolver
get_resolver().url_patterns
print(",".join(name for name in {HEAVY!r} if name in sys.modules))
"""


def test_a_process_with_every_app_and_view_loaded_has_no_web_server_nor_simulator():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "comfyweb.settings"}
    found = subprocess.run(
        [sys.executable, "-c", LOADED], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == ""


def test_runserver_is_still_daphnes():
    from django.core.management import get_commands

    assert get_commands()["runserver"] == "daphne"
