"""The recording format: a folder of gzip-compressed JSONL chunks, one per UTC hour, and a
manifest. Owns writing (``RecordingWriter``) and reading (``read_events``, ``load_manifest``).

Layout::

    DIR/manifest.json
    DIR/chunks/20261207T05.jsonl.gz      # lines whose receive time falls in 05:00-05:59 UTC
    DIR/chunks/20261207T06.jsonl.gz

Each line is one JSON object, in receive order (``t`` never decreases through the whole
recording)::

    {"t":1796619600123,"k":"spot_book","s":"BTCUSDT",
     "d":{"u":4009,"s":"BTCUSDT","b":"60000.01","B":"1.2","a":"60000.02","A":"0.7"}}
    {"t":1796619600500,"k":"mark","s":"BTCUSDT","d":{"e":"markPriceUpdate","E":1796619600000,
     "s":"BTCUSDT","p":"60010.5","i":"60000.1","P":"60000.1","r":"0.00010000","T":1796630400000}}
    {"t":1796619601000,"k":"gap","s":"",
     "d":{"stream":"spot_book","from":1796619600123,"to":1796619601000,"reason":"connection lost"}}

(shown wrapped here; in the file each line is one line)

* ``t``: receive time, UTC epoch milliseconds, on the recorder's clock (made non-decreasing).
  For imported files it is the exchange's event time.
* ``k``: the kind of line:
  - ``spot_book``: a spot ``<symbol>@bookTicker`` payload, exactly as received (``u s b B a A``).
  - ``fut_book``: a USDⓈ-M ``<symbol>@bookTicker`` payload as received (``e u E T s b B a A``).
  - ``mark``: a USDⓈ-M ``markPriceUpdate`` payload as received (``E p i P r T``; ``r`` and ``T``
    carry the funding rate and next funding time).
  - ``trade``: an aggregate trade ``{"a","p","q","T","m"}`` (aggTrade field names; from imports).
  - ``gap``: the recorder lost the stream ``d.stream`` (a kind above) between ``d.from`` (last
    line received before the loss) and ``d.to`` (first moment it was receiving again); ``s`` is
    empty. Nothing of that stream was recorded in between.
* ``s``: the symbol, upper case.
* ``d``: the payload. Prices and quantities stay the exchange's decimal strings.

The manifest (``manifest.json``) is rewritten atomically as chunks fill::

    {"format": "binance-executor-recording", "version": 1, "source": "wss://...", "symbols": [...],
     "kinds": ["spot_book", "fut_book", "mark"], "created_ms": ..., "complete": true,
     "chunks": [{"file": "chunks/20261207T05.jsonl.gz", "first_ms": ..., "last_ms": ..., "lines": 151200,
                 "gaps": 0}]}

``complete`` is false while a recorder is still writing (or if it was killed); readers still
read every chunk listed, and a chunk cut short by a kill is read up to its last whole line.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import orjson

FORMAT = "binance-executor-recording"
VERSION = 1
KINDS = ("spot_book", "fut_book", "mark", "trade", "gap")
MANIFEST = "manifest.json"
CHUNK_DIR = "chunks"
HOUR_MS = 3_600_000


class RecordingError(ValueError):
    """A folder that is not a readable recording (one line for the user)."""


class Line(NamedTuple):
    """One decoded line of a recording (immutable; a named tuple: a replay makes one per
    recorded line, and a tuple is several times cheaper to build than a frozen dataclass)."""

    t: int
    kind: str
    symbol: str
    data: dict[str, Any]


def chunk_name(t_ms: int) -> str:
    hour = dt.datetime.fromtimestamp(t_ms / 1000, dt.UTC)
    return f"{CHUNK_DIR}/{hour:%Y%m%dT%H}.jsonl.gz"


@dataclass
class _Chunk:
    file: str
    first_ms: int
    last_ms: int
    lines: int = 0
    gaps: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "first_ms": self.first_ms,
            "last_ms": self.last_ms,
            "lines": self.lines,
            "gaps": self.gaps,
        }


@dataclass
class RecordingWriter:
    """Appends lines to hourly gzip chunks; memory is bounded by ``buffer_lines``.

    Lines are buffered as bytes and compressed in blocks; ``flush()`` (called every
    ``buffer_lines`` lines and by the recorder about once a second) pushes them into the
    gzip stream and rewrites the manifest, so a killed recorder loses at most one block.
    """

    folder: Path
    source: str
    symbols: list[str]
    kinds: list[str]
    buffer_lines: int = 2000
    compresslevel: int = 3
    chunks: list[_Chunk] = field(default_factory=list)
    lines: int = 0
    gaps: int = 0
    bytes_raw: int = 0
    _buf: list[bytes] = field(default_factory=list)
    _fh: Any = None
    _hour: int = -1
    _last_t: int = 0
    _created_ms: int = 0

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        if (self.folder / MANIFEST).exists():
            raise RecordingError(f"{self.folder} already holds a recording; choose another --out")
        (self.folder / CHUNK_DIR).mkdir(parents=True, exist_ok=True)
        self._created_ms = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
        self._write_manifest(complete=False)

    def write(self, t_ms: int, kind: str, symbol: str, data: dict[str, Any] | bytes) -> int:
        """Append one line; returns the ``t`` actually stored (never below the previous one)."""
        t = t_ms if t_ms >= self._last_t else self._last_t
        self._last_t = t
        hour = t // HOUR_MS
        if hour != self._hour:
            self._rotate(hour, t)
        raw = data if isinstance(data, bytes) else orjson.dumps(data)
        line = b'{"t":%d,"k":"%s","s":"%s","d":%s}\n' % (t, kind.encode(), symbol.encode(), raw)
        self._buf.append(line)
        chunk = self.chunks[-1]
        chunk.lines += 1
        chunk.last_ms = t
        self.lines += 1
        if kind == "gap":
            chunk.gaps += 1
            self.gaps += 1
        if len(self._buf) >= self.buffer_lines:
            self.flush()
        return t

    @property
    def last_t(self) -> int:
        """The ``t`` of the newest line written (0 before any)."""
        return self._last_t

    def gap(self, stream: str, from_ms: int, to_ms: int, reason: str) -> None:
        self.write(to_ms, "gap", "", {"stream": stream, "from": from_ms, "to": to_ms, "reason": reason[:200]})

    def _rotate(self, hour: int, t: int) -> None:
        self.flush()
        if self._fh is not None:
            self._fh.close()
        name = chunk_name(t)
        # Kept open across calls (closed by _rotate/close): one gzip member per chunk.
        self._fh = gzip.open(self.folder / name, "ab", compresslevel=self.compresslevel)  # noqa: SIM115
        self._hour = hour
        self.chunks.append(_Chunk(file=name, first_ms=t, last_ms=t))

    def flush(self) -> None:
        if self._buf and self._fh is not None:
            data = b"".join(self._buf)
            self.bytes_raw += len(data)
            self._fh.write(data)
            self._fh.flush()  # a complete deflate block: readable even if we are killed next
            self._buf.clear()
            self._write_manifest(complete=False)

    def close(self) -> None:
        self.flush()
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        self._write_manifest(complete=True)

    def bytes_on_disk(self) -> int:
        return sum(
            (self.folder / c.file).stat().st_size for c in self.chunks if (self.folder / c.file).exists()
        )

    def _write_manifest(self, *, complete: bool) -> None:
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "source": self.source,
            "symbols": self.symbols,
            "kinds": self.kinds,
            "created_ms": self._created_ms,
            "complete": complete,
            "lines": self.lines,
            "gaps": self.gaps,
            "chunks": [c.as_dict() for c in self.chunks],
        }
        tmp = self.folder / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, self.folder / MANIFEST)


def load_manifest(folder: Path | str) -> dict[str, Any]:
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise RecordingError(f"{folder}: no {MANIFEST} (not a recording folder)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RecordingError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise RecordingError(f"{path}: not a {FORMAT} manifest")
    if manifest.get("version") != VERSION:
        raise RecordingError(
            f"{path}: format version {manifest.get('version')!r}, this program reads {VERSION}"
        )
    if not isinstance(manifest.get("chunks"), list):
        raise RecordingError(f"{path}: manifest has no chunk list")
    return manifest


def read_lines(folder: Path | str, *, symbols: set[str] | None = None) -> Iterator[Line]:
    """Every line of the recording in order (optionally only ``symbols``; gaps always)."""
    folder = Path(folder)
    manifest = load_manifest(folder)
    loads = orjson.loads
    for chunk in manifest["chunks"]:
        path = folder / chunk["file"]
        if not path.is_file():
            raise RecordingError(f"{path}: chunk listed in the manifest is missing")
        for n, raw in enumerate(_gzip_lines(path), 1):
            try:
                obj = loads(raw)
                line = Line(int(obj["t"]), obj["k"], obj["s"], obj["d"])
            except (ValueError, KeyError, TypeError) as exc:
                raise RecordingError(f"{path}:{n}: not a recording line ({exc})") from None
            if symbols is not None and line.kind != "gap" and line.symbol not in symbols:
                continue
            yield line


def _gzip_lines(path: Path) -> Iterator[bytes]:
    """Whole lines of a gzip file; a chunk cut short (a killed recorder) ends at its last whole line.

    Read in blocks and split (a replay reads every line of a recording: one ``readline`` per
    line cost more than the JSON decoding). ``read1`` returns what one read decompressed, so a
    truncated or damaged stream loses nothing before the damage, as with ``readline``; the
    text after the last newline is never a whole line and is dropped.
    """
    fh = gzip.open(path, "rb")  # noqa: SIM115 - closed in the finally of this generator
    tail = b""
    try:
        while True:
            try:
                block = fh.read1(1 << 16)
            except (EOFError, zlib.error, gzip.BadGzipFile):
                return
            if not block:
                return
            lines = (tail + block if tail else block).split(b"\n")
            tail = lines.pop()  # b"" after a newline; otherwise the start of the next line
            for raw in lines:
                if raw.strip():
                    yield raw
    finally:
        fh.close()
