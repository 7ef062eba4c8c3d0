"""``if_loaded``: an exception class for an ``except`` clause, named only once its module is loaded.

Why: the read-only audit on SQLite starts without SQLAlchemy or the pydantic config (~0.25 s
of imports; bench/RESULTS.md, "#16 audit start-up and teardown"), yet its handlers must still
catch their errors when they do occur. Nothing can raise a class before its module is
imported, and an ``except`` clause evaluates its expression only once an exception reaches
it, so ``except if_loaded(...)`` asks after the fact, when the answer is settled.
"""

from __future__ import annotations

import sys

__all__ = ["if_loaded"]


def if_loaded(module: str, name: str) -> tuple[type[BaseException], ...]:
    """``(module.name,)`` when ``module`` is imported in this process, else ``()``."""
    loaded = sys.modules.get(module)
    return (getattr(loaded, name),) if loaded is not None else ()
