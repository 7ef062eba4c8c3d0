"""``run.py audit --db`` on SQLite starts light and ends fast (bench/RESULTS.md, "#16 audit
start-up and teardown"): it never imports SQLAlchemy, pydantic (the config) or asyncio, which
it does not use, and it freezes the collector before the interpreter's teardown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from executor.cli import main
from tests.audit.scenario import Built

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("sqlalchemy", "pydantic", "asyncio", "executor.config")
MARK = "@@startup "

# run.py exactly as a shell runs it (``run_name="__main__"``), then, after its ``sys.exit``,
# one line saying which heavy modules the process imported and whether the collector is frozen.
_PROBE = f"""
import gc, json, runpy, sys
sys.argv = [{str(ROOT / "run.py")!r}, *sys.argv[1:]]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as exc:
    code = exc.code
print({MARK!r} + json.dumps({{"code": code, "frozen": gc.get_freeze_count(),
      "imported": [m for m in {HEAVY!r} if m in sys.modules]}}), file=sys.stderr)
"""


def _probe(*args: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    p = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, timeout=60,
                       cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    line = next(x for x in p.stderr.splitlines() if x.startswith(MARK))
    return p, json.loads(line[len(MARK):])


@pytest.mark.parametrize("command", ["report", "verify"])
def test_sqlite_audit_imports_no_sqlalchemy_nor_config(scenario: Built, command: str) -> None:
    p, seen = _probe("audit", command, "--db", scenario.url)
    assert seen["code"] == 0, p.stderr
    assert seen["imported"] == []
    assert seen["frozen"] > 0  # run.py froze the collector before the teardown
    # The identity line still comes from ledger_meta (now without the ORM models).
    assert "ledger: no identity recorded" in p.stdout
    assert ("OK:" if command == "verify" else "BY SYMBOL") in p.stdout


def test_with_db_a_given_config_and_options_are_checked(scenario: Built, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[risk]\nno_such_key = 1\n")
    assert main(["audit", "--db", scenario.url, "--config", str(bad)]) == 2
    assert "config error" in capsys.readouterr().err
    # A bad value on the command line is exit 2 too, config read or not.
    assert main(["--web", "nowhere", "audit", "--db", scenario.url]) == 2
    assert "config error: --web" in capsys.readouterr().err


def test_the_sqlalchemy_error_clause_names_no_class_until_it_is_loaded() -> None:
    """``sqlalchemy_errors`` in a fresh process: empty before SQLAlchemy is imported."""
    code = ("import sys; from executor.audit.query import sqlalchemy_errors as e; a = e(); "
            "import sqlalchemy.exc as x; print(a == () and e() == (x.SQLAlchemyError,) "
            "and e('DBAPIError') == (x.DBAPIError,))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.stdout.strip() == "True", p.stderr
