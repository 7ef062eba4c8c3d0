"""Retention of ledger files: the per-run ledgers of paper runs on a fresh embedded exchange.

A run on a freshly started embedded exchange gets its own ledger file
(``<db dir>/sim/<name>-<UTC time>.db``, see ``app.sim_ledger_url``) because the exchange
restarts its order and trade ids. Left alone they pile up, one per run; ``prune_sim_ledgers``
keeps the newest ``keep`` (``[sim] keep_ledgers``) and deletes the older ones with their
``-wal``/``-shm`` companions. Real-money and testnet ledgers are never touched here: their
rows are archived with ``run.py db archive`` (``executor.persistence.archive``).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

__all__ = ["prune_sim_ledgers", "sim_ledgers"]

log = logging.getLogger(__name__)

_COMPANIONS = ("-wal", "-shm", "-journal")


def sim_ledgers(folder: Path, stem: str, suffix: str) -> list[Path]:
    """The per-run ledgers in ``folder``, oldest first (their names sort by start time)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f"{stem}-*{suffix}") if p.is_file())


def prune_sim_ledgers(current: Path, keep: int) -> list[Path]:
    """Delete the oldest per-run ledgers beside ``current`` so at most ``keep`` remain,
    ``current`` (which may not exist yet) counted among them; returns those deleted."""
    stem = current.name[: current.name.rindex("-")] if "-" in current.name else current.stem
    others = [p for p in sim_ledgers(current.parent, stem, current.suffix) if p != current]
    room = max(0, keep - 1)
    doomed = others[: max(0, len(others) - room)]
    removed = []
    for path in doomed:
        try:
            path.unlink()
        except OSError as exc:
            log.warning("could not delete the old sim ledger %s: %s", path, exc)
            continue
        for tail in _COMPANIONS:
            with contextlib.suppress(OSError):
                Path(f"{path}{tail}").unlink()
        removed.append(path)
    return removed
