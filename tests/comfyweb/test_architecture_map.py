"""docs/architecture.md stays true: every module, package and file it names exists,
and every Python module it names imports."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAP = ROOT / "docs" / "architecture.md"
# A repository path in backticks: `tasks/dispatch.py`, `servers/monitor/`, `bin/import-cycles`.
TOP = "comfyweb|teams|workflows|tasks|servers|api|tests|bin|templates"
NAMED_PATH = re.compile(rf"`((?:{TOP})/[\w/.-]*)`")


def named_paths() -> list[str]:
    return sorted(set(NAMED_PATH.findall(MAP.read_text())))


def test_the_map_names_the_modules_of_every_step():
    assert len(named_paths()) > 40


@pytest.mark.parametrize("path", named_paths())
def test_every_path_the_map_names_exists_and_imports(path):
    assert (ROOT / path).exists(), f"docs/architecture.md names {path}, which is not there"
    if path.endswith(".py"):
        importlib.import_module(path.removesuffix(".py").replace("/", "."))
    elif (ROOT / path / "__init__.py").exists():
        importlib.import_module(path.rstrip("/").replace("/", "."))
