"""The design's boundaries, checked: core imports no platform SDK; openai and sqlite_utils stay in their modules."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "core"

BLOCK_AND_IMPORT = """
import importlib, pkgutil, sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"slack_sdk", "slack_bolt", "discord"}:
            raise ImportError(f"platform SDK {name} imported from core")
        return None

sys.meta_path.insert(0, Block())
import core
for module in pkgutil.walk_packages(core.__path__, "core."):
    importlib.import_module(module.name)
print("imported", len(sys.modules))
"""


def test_core_imports_without_any_platform_sdk() -> None:
    result = subprocess.run(
        [sys.executable, "-c", BLOCK_AND_IMPORT], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "imported" in result.stdout


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_openai_and_sqlite_utils_are_each_imported_in_one_place() -> None:
    openai_users = set()
    sqlite_users = set()
    for path in CORE.rglob("*.py"):
        imports = _imports(path)
        relative = path.relative_to(ROOT).as_posix()
        if "openai" in imports:
            openai_users.add(relative)
        if "sqlite_utils" in imports or "sqlite3" in imports:
            sqlite_users.add(relative)
    assert openai_users == {"core/model_client.py"}
    assert sqlite_users
    assert all(p.startswith("core/store/") for p in sqlite_users)


# The Assistants-compatible API serialises its objects with the openai SDK's own types, in its serializer modules,
# and its OpenAPI document takes its response schemas from the same types.
API_SERIALIZERS = tuple(
    ROOT / "bots" / "api" / name for name in ("serialize.py", "serialize_files.py", "serialize_runs.py", "openapi.py")
)


def test_adapters_hold_no_sql() -> None:
    for path in (ROOT / "bots").rglob("*.py"):
        imports = _imports(path)
        allowed = {"openai"} if path in API_SERIALIZERS else set()
        assert not imports & ({"sqlite3", "sqlite_utils", "openai", "agents"} - allowed), path


def test_adapters_reach_the_store_only_through_the_core() -> None:
    """bots/ talks to the core's facade and its types, never to core.store (the database's own package)."""
    for path in (ROOT / "bots").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            assert not any(m == "core.store" or m.startswith("core.store.") for m in modules), path


@pytest.mark.parametrize("serializer", API_SERIALIZERS, ids=lambda path: path.name)
def test_the_api_takes_only_types_from_the_openai_sdk(serializer: Path) -> None:
    modules = [
        node.module
        for node in ast.walk(ast.parse(serializer.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("openai")
    ]
    assert modules
    assert all(module == "openai.types" or module.startswith("openai.types.") for module in modules)
    assert "openai" not in {
        alias.name.split(".")[0]
        for node in ast.walk(ast.parse(serializer.read_text()))
        if isinstance(node, ast.Import)
        for alias in node.names
    }
