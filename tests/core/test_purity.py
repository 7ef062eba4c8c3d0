"""The core stays pure: it imports nothing that does I/O (ARCHITECTURE.md, "executor/core")."""

import ast
from pathlib import Path

import executor.core

ALLOWED = {"__future__", "collections", "dataclasses", "decimal", "enum", "hashlib", "re", "typing", "orjson"}


def test_core_imports_only_pure_modules() -> None:
    core = Path(executor.core.__file__).parent
    for path in sorted(core.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                root = name.split(".")[0]
                assert root in ALLOWED or name.startswith("executor.core"), f"{path.name} imports {name}"
