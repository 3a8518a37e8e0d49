"""`servers` does not import `tasks`: the monitor reaches the work through
`servers.monitor.work.WorkHooks`, which the tasks app registers (lazy imports count too)."""

from __future__ import annotations

import ast
from pathlib import Path

SERVERS = Path(__file__).resolve().parents[2] / "servers"


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def test_no_module_of_servers_imports_tasks():
    files = sorted(SERVERS.rglob("*.py"))
    assert files
    offenders = {
        str(path.relative_to(SERVERS.parent)): sorted(tasks)
        for path in files
        if (tasks := {m for m in imported_modules(path) if m == "tasks" or m.startswith("tasks.")})
    }
    assert offenders == {}
