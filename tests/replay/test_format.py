"""The recording format: hourly gzip chunks, manifest, order, gaps, and a killed writer."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from executor.replay.format import HOUR_MS, RecordingError, RecordingWriter, load_manifest, read_lines
from executor.replay.recorder import Recorder, plans
from executor.sim.exchange import SimExchange
from executor.sim.server import SimServer
from tests.replay.helpers import T0, book


def test_lines_round_trip_through_hourly_chunks(tmp_path: Path) -> None:
    w = RecordingWriter(
        tmp_path / "r", source="test", symbols=["BTCUSDT"], kinds=["spot_book"], buffer_lines=3
    )
    times = [T0 + 10, T0 + HOUR_MS - 1, T0 + HOUR_MS, T0 + 2 * HOUR_MS + 5]
    for t in times:
        w.write(t, "spot_book", "BTCUSDT", book("BTCUSDT", "1.00", "1.01"))
    w.gap("spot_book", T0 + 2 * HOUR_MS + 5, T0 + 2 * HOUR_MS + 900, "connection lost")
    w.close()
    manifest = load_manifest(tmp_path / "r")
    assert [c["file"] for c in manifest["chunks"]] == [
        "chunks/20261207T00.jsonl.gz",
        "chunks/20261207T01.jsonl.gz",
        "chunks/20261207T02.jsonl.gz",
    ]
    assert [c["lines"] for c in manifest["chunks"]] == [2, 1, 2]
    assert manifest["gaps"] == 1 and manifest["complete"] is True
    lines = list(read_lines(tmp_path / "r"))
    assert [x.t for x in lines] == [*times, T0 + 2 * HOUR_MS + 900]
    assert lines[0].data == book("BTCUSDT", "1.00", "1.01")
    assert lines[-1].kind == "gap" and lines[-1].data["from"] == T0 + 2 * HOUR_MS + 5


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=3 * HOUR_MS), min_size=1, max_size=30))
def test_stored_times_never_decrease(tmp_path_factory: pytest.TempPathFactory, offsets: list[int]) -> None:
    folder = tmp_path_factory.mktemp("r") / "rec"
    w = RecordingWriter(folder, source="t", symbols=["X"], kinds=["spot_book"])
    for off in offsets:
        w.write(T0 + off, "spot_book", "ETHUSDT", {"u": 1})
    w.close()
    ts = [x.t for x in read_lines(folder)]
    assert len(ts) == len(offsets)
    assert ts == sorted(ts) and ts[0] == T0 + offsets[0]


def test_a_killed_writer_leaves_every_flushed_line_readable(tmp_path: Path) -> None:
    w = RecordingWriter(tmp_path / "r", source="t", symbols=["X"], kinds=["spot_book"], buffer_lines=10_000)
    for i in range(100):
        w.write(T0 + i, "spot_book", "BTCUSDT", {"u": i})
    w.flush()
    for i in range(100, 150):
        w.write(T0 + i, "spot_book", "BTCUSDT", {"u": i})  # buffered, never flushed: lost with the process
    assert load_manifest(tmp_path / "r")["complete"] is False
    assert [x.data["u"] for x in read_lines(tmp_path / "r")] == list(range(100))


def test_not_a_recording(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match=r"no manifest\.json"):
        list(read_lines(tmp_path))
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(RecordingError, match="not a binance-executor-recording manifest"):
        load_manifest(tmp_path)
    RecordingWriter(tmp_path / "r", source="t", symbols=[], kinds=[])
    with pytest.raises(RecordingError, match="already holds a recording"):
        RecordingWriter(tmp_path / "r", source="t", symbols=[], kinds=[])


async def test_the_recorder_marks_a_reconnect_as_a_gap(tmp_path: Path) -> None:
    sim = SimExchange.for_tests(time_scale=5)
    server = SimServer(sim, host="127.0.0.1")
    urls = await server.start()
    await sim.start()
    try:
        ep = urls.endpoints()
        w = RecordingWriter(tmp_path / "r", source="sim", symbols=["BTCUSDT", "ETHUSDT"], kinds=["spot_book"])
        rec = Recorder(w, plans(ep.spot_stream, ep.futures_stream, ["BTCUSDT", "ETHUSDT"], ["spot_book"]))
        task = asyncio.create_task(rec.run(30.0))

        async def frames_at_least(n: int) -> None:
            while rec.stats.frames.get("spot_book", 0) < n:
                await asyncio.sleep(0.02)

        await asyncio.wait_for(frames_at_least(20), 10)
        assert await sim.faults.connections.drop("market") == 1
        before = rec.stats.frames["spot_book"]
        await asyncio.wait_for(frames_at_least(before + 20), 10)
        rec.stop()
        await asyncio.wait_for(task, 10)
    finally:
        await sim.stop()
        await server.stop()
    lines = list(read_lines(tmp_path / "r"))
    gaps = [x for x in lines if x.kind == "gap"]
    assert len(gaps) == 1 and gaps[0].data["stream"] == "spot_book"
    g = gaps[0].data
    idx = lines.index(gaps[0])
    assert lines[idx - 1].t <= g["from"] < g["to"] == gaps[0].t
    assert any(x.kind == "spot_book" for x in lines[idx + 1 :])
    assert rec.stats.connects["spot_book"] == 2
    assert load_manifest(tmp_path / "r")["gaps"] == 1


def test_the_recorder_asks_binance_for_the_documented_streams() -> None:
    from executor.venue.endpoints import LIVE

    got = {
        p.kind: p.url
        for p in plans(
            LIVE.spot_stream, LIVE.futures_stream, ["BTCUSDT", "ETHUSDT"], ["spot_book", "fut_book", "mark"]
        )
    }
    assert got == {
        "spot_book": "wss://stream.binance.com:9443/stream?streams=btcusdt@bookTicker/ethusdt@bookTicker",
        "fut_book": "wss://fstream.binance.com/public/stream?streams=btcusdt@bookTicker/ethusdt@bookTicker",
        "mark": "wss://fstream.binance.com/market/stream?streams=btcusdt@markPrice@1s/ethusdt@markPrice@1s",
    }
