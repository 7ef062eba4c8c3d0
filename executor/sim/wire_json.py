"""Compact JSON for what the embedded exchange sends (REST bodies, stream and WS API frames).

``dumps`` gives the bytes ``json.dumps(data, separators=(",", ":"))`` gives for the exchange's
messages (str keys; str, int, bool and None values; Binance sends decimals as strings) at a
fraction of the cost: orjson encodes, and whenever its text could differ from the standard
library's (non-ASCII text, which json escapes; a float, whose spelling may differ, e.g.
``1e-05``; anything orjson refuses), the standard library's encoding is used instead. A
max-speed replay sends a few frames per order plus every recorded mark through here.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_orjson_dumps = orjson.dumps
_EncodeError = orjson.JSONEncodeError


_PLAIN = frozenset((str, int, bool, type(None)))


def _has_float(data: Any) -> bool:
    """True if a float is anywhere in ``data`` (dicts, lists and tuples walked)."""
    values = data.values() if data.__class__ is dict else data if isinstance(data, list | tuple) else (data,)
    plain = _PLAIN
    for v in values:
        cls = v.__class__
        if cls in plain:
            continue
        if isinstance(v, float):
            return True
        if isinstance(v, dict | list | tuple) and _has_float(v):
            return True
    return False


def dumps(data: Any) -> str:
    """``json.dumps(data, separators=(",", ":"))``, byte for byte (see the module docstring)."""
    try:
        raw = _orjson_dumps(data)
    except _EncodeError:
        return json.dumps(data, separators=(",", ":"))
    # Non-ASCII text (json escapes it) or a float (spelled differently, e.g. 1e-05): the
    # standard library's text. Neither occurs in the exchange's usual messages.
    if raw.isascii() and not _has_float(data):
        return raw.decode()
    return json.dumps(data, separators=(",", ":"))
