"""The dependency direction: backup is the library, verify the suite on top of it."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import backup
import verify

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    """Every module a source file imports, at any depth (function-level imports too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_backup_module_imports_verify() -> None:
    files = sorted((ROOT / "backup").rglob("*.py"))
    assert len(files) > 20
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            name for name in imported_modules(path) if name.split(".")[0] == "verify"
        )
        for path in files
    }
    assert {path: names for path, names in offenders.items() if names} == {}


# What the n8n core (backup/n8n) may use besides itself: the shared basics, never the
# operations (snapshot, restore, manifest...) built on top of it.
CORE_MAY_USE = {
    "backup.errors",
    "backup.secret",
    "backup.atomic",
    "backup.identifiers",
    "backup.progress",
    "backup.extras",
    "backup.ownership",
    "backup.abandoned",  # temporary folders claimed for the next run's clean-up
}


def test_the_n8n_core_uses_no_operation() -> None:
    files = sorted((ROOT / "backup" / "n8n").rglob("*.py"))
    assert len(files) > 8
    upward = {
        str(path.relative_to(ROOT)): sorted(
            name
            for name in imported_modules(path)
            if name.startswith("backup")
            and not name.startswith("backup.n8n")
            and name not in CORE_MAY_USE
        )
        for path in files
    }
    assert {path: names for path, names in upward.items() if names} == {}


def test_every_module_imports() -> None:
    """Each module of both packages imports on its own (no cycle hidden by import order)."""
    for package in (backup, verify):
        for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if not module.name.endswith(".__main__"):  # runs the command line when imported
                importlib.import_module(module.name)
