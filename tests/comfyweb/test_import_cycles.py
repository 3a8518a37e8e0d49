"""`bin/import-cycles` (run by `make lint`) finds no cycle in the tree, and finds a lazy one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bin" / "import-cycles"


def import_cycles(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(root)], capture_output=True, text=True, check=False
    )


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_first_party_modules_import_no_cycle():
    result = import_cycles(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no cycles" in result.stdout


def test_a_cycle_closed_by_a_lazy_import_is_found_with_its_lines(tmp_path):
    write(
        tmp_path,
        {
            "shop/__init__.py": "",
            "shop/orders.py": "from shop.billing import charge\n",
            "shop/billing.py": "def charge():\n    from . import orders\n\n    return orders\n",
            "shop/migrations/__init__.py": "",
            "shop/migrations/0001_initial.py": "import shop.orders\n",
            "notpackage/loose.py": "import shop.orders\n",
        },
    )
    result = import_cycles(tmp_path)
    assert result.returncode == 1
    assert "cycle 1: 2 modules: shop.billing, shop.orders" in result.stdout
    assert "shop.orders -> shop.billing  shop/orders.py:1" in result.stdout
    assert "shop.billing -> shop.orders  shop/billing.py:2  (lazy)" in result.stdout
    assert "1 cycle(s)" in result.stdout


def test_a_package_init_run_on_the_way_to_a_submodule_closes_a_cycle(tmp_path):
    write(
        tmp_path,
        {
            "app/__init__.py": "",
            "app/models.py": "Thing = object\n",
            "app/signals.py": "from other.hooks import on_save\n",
            "other/__init__.py": "",
            "other/hooks.py": "import app.models\n\non_save = None\n",
        },
    )
    assert import_cycles(tmp_path).returncode == 0
    write(tmp_path, {"app/__init__.py": "from app import signals\n"})
    result = import_cycles(tmp_path)
    # other.hooks runs app/__init__.py before app.models, and that imports other.hooks again.
    assert result.returncode == 1
    assert "other.hooks -> app  other/hooks.py:1  (package)" in result.stdout
    assert "app -> app.signals  app/__init__.py:1" in result.stdout


def test_imports_only_for_type_checkers_make_no_cycle(tmp_path):
    write(
        tmp_path,
        {
            "pets/__init__.py": "",
            "pets/cats.py": "import pets.dogs\n",
            "pets/dogs.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    from pets.cats import Cat\n"
            ),
        },
    )
    assert import_cycles(tmp_path).returncode == 0
