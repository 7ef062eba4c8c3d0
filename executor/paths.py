"""Where this checkout is: ``ROOT``, the folder every relative default path starts from.

A leaf module (standard library only): light commands such as ``run.py audit --db`` need the
root to resolve paths without importing ``executor.config`` and its pydantic schema
(~0.1 s of start-up, bench/RESULTS.md, "#16 audit start-up and teardown").
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
