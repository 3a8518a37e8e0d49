"""The library's place in the tree: `servers` imports nothing of it but its folder list
(`library/folders.py`, which imports nothing), it imports no app but
`comfyweb` and `servers`, and its job is queued by a path that names a function of
`library/jobs.py` (the rule of tests/comfyweb/test_job_paths.py, which scans the
apps it lists)."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

from library.enqueue import RUN_DOWNLOAD
from tests.comfyweb.test_job_paths import defined_in_a_jobs_module, resolved
from tests.servers.test_seams import imported_modules

ROOT = Path(__file__).resolve().parents[2]
DOTTED = re.compile(r"^library(?:\.\w+)+$")
APPS = ("api", "comfyweb", "servers", "tasks", "teams", "workflows", "library")


def first_party(path: Path) -> set[str]:
    return {m.split(".")[0] for m in imported_modules(path)} & set(APPS)


def test_servers_import_nothing_of_the_library_but_its_folder_list():
    offenders = {
        str(path.relative_to(ROOT)): sorted(library)
        for path in sorted((ROOT / "servers").rglob("*.py"))
        if (library := {m for m in imported_modules(path) if m.split(".")[0] == "library"})
        - {"library.folders"}
    }
    assert offenders == {}
    # The folder list is plain data: importing it runs nothing of the library's.
    assert first_party(ROOT / "library" / "folders.py") == set()
    assert "library.folders" in imported_modules(ROOT / "servers" / "local" / "modelpaths.py")


def test_the_library_imports_only_comfyweb_and_servers():
    allowed = {"library", "comfyweb", "servers"}
    offenders = {
        str(path.relative_to(ROOT)): sorted(first_party(path) - allowed)
        for path in sorted((ROOT / "library").rglob("*.py"))
        if first_party(path) - allowed
    }
    assert offenders == {}


def test_every_dotted_job_path_of_the_library_names_a_function_of_its_jobs_module():
    found = set()
    for path in sorted((ROOT / "library").rglob("*.py")):
        if "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and DOTTED.match(str(node.value)):
                found.add(node.value)
    jobs = {s for s in found if inspect.isfunction(resolved(s))}
    assert RUN_DOWNLOAD in jobs
    assert {s for s in jobs if not defined_in_a_jobs_module(s)} == set()
    assert {s for s in found if ".jobs." in s and s not in jobs} == set()
