"""``raise_gc_threshold`` / ``Reconciler(gc_young_threshold=...)``: raise only, None leaves gc alone."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from executor.exchange.binance_reports import SPOT
from executor.persistence.store import Store
from executor.reconcile.reconciler import Reconciler, raise_gc_threshold
from tests.reconcile.conftest import PREFIX


@pytest.fixture
def saved_threshold() -> Iterator[tuple[int, ...]]:
    saved = gc.get_threshold()
    try:
        yield saved
    finally:
        gc.set_threshold(*saved)


def test_raises_from_lower(saved_threshold: tuple[int, ...]) -> None:
    gc.set_threshold(700, 11, 12)
    assert raise_gc_threshold(5000) is True
    assert gc.get_threshold() == (5000, 11, 12)


def test_never_lowers(saved_threshold: tuple[int, ...]) -> None:
    gc.set_threshold(9000, 11, 12)
    assert raise_gc_threshold(5000) is False
    assert gc.get_threshold() == (9000, 11, 12)
    gc.set_threshold(5000, 11, 12)
    assert raise_gc_threshold(5000) is False
    assert gc.get_threshold() == (5000, 11, 12)


def test_collection_off_stays_off(saved_threshold: tuple[int, ...]) -> None:
    gc.set_threshold(0, 11, 12)
    assert raise_gc_threshold(5000) is False
    assert gc.get_threshold() == (0, 11, 12)


async def test_start_raises_threshold(store: Store, saved_threshold: tuple[int, ...]) -> None:
    gc.set_threshold(700, 11, 12)
    rec = Reconciler(store, prefix=PREFIX, translate=SPOT, gc_young_threshold=4321)
    await rec.start()
    try:
        assert gc.get_threshold() == (4321, 11, 12)
    finally:
        await rec.stop()


async def test_start_with_none_leaves_gc_alone(store: Store, saved_threshold: tuple[int, ...]) -> None:
    gc.set_threshold(700, 11, 12)
    rec = Reconciler(store, prefix=PREFIX, translate=SPOT, gc_young_threshold=None)
    await rec.start()
    try:
        assert gc.get_threshold() == (700, 11, 12)
    finally:
        await rec.stop()


async def test_start_never_lowers(store: Store, saved_threshold: tuple[int, ...]) -> None:
    gc.set_threshold(90000, 11, 12)
    rec = Reconciler(store, prefix=PREFIX, translate=SPOT, gc_young_threshold=4321)
    await rec.start()
    try:
        assert gc.get_threshold() == (90000, 11, 12)
    finally:
        await rec.stop()
