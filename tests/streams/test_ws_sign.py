"""WS API signing for every key type, checked by the embedded exchange's own verifier."""

from __future__ import annotations

import time
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from executor.exchange.ws_sign import WsSigner, ws_signature_payload
from executor.sim import auth
from executor.sim.wsapi import signature_payloads


@pytest.mark.parametrize("kind", ["HMAC", "Ed25519", "RSA"])
async def test_signatures_verify_for_every_key_type(sim: Any, make_client: Any, kind: str) -> None:
    creds = sim.exchange.credentials(kind)
    signer = WsSigner(make_client(creds), now_ms=lambda: 1_700_000_000_123)
    params = signer.sign({"symbol": "BTCUSDT", "price": Decimal("60000.10"), "flag": True})
    assert list(params)[-1] == "signature"
    assert params["apiKey"] == creds.api_key and params["timestamp"] == 1_700_000_000_123
    assert params["recvWindow"] == 5000 and params["price"] == "60000.10" and params["flag"] == "true"
    found = sim.exchange.accounts.by_api_key(creds.api_key)
    assert found is not None
    api = found[1]
    assert auth.verify_signature(api, ws_signature_payload(params), params["signature"])
    tampered = {**params, "price": "60000.20"}
    assert not any(auth.verify_signature(api, p, params["signature"]) for p in signature_payloads(tampered))


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.text("abcdefghijklmnopqrstuvwxyzABC", min_size=1, max_size=8),
                       st.text(min_size=0, max_size=12), max_size=5))
def test_payload_matches_the_exchanges_encoded_form(params: dict[str, str]) -> None:
    params = {k: v for k, v in params.items() if k != "signature"}
    assert ws_signature_payload(params) == signature_payloads(params)[0]


def _client(api_key: str = "key", offset_ms: int = 0) -> Any:
    return SimpleNamespace(API_KEY=api_key, timestamp_offset=offset_ms,
                           _generate_ws_api_signature=lambda data: "sig")


def test_uses_the_clients_synced_offset() -> None:
    day_ms = 86_400_000  # the offset ServerClock keeps on the client is honoured
    signed = WsSigner(_client(offset_ms=day_ms), recv_window_ms=None).sign()
    assert set(signed) == {"apiKey", "timestamp", "signature"}
    assert abs(signed["timestamp"] - (time.time() * 1000 + day_ms)) < 5_000


def test_bad_input_is_refused() -> None:
    signer = WsSigner(_client())
    with pytest.raises(TypeError, match="float"):
        signer.sign({"price": 1.5})
    with pytest.raises(ValueError, match="timestamp"):
        signer.sign({"timestamp": 1})
    with pytest.raises(ValueError, match="finite"):
        signer.sign({"price": Decimal("NaN")})
    with pytest.raises(ValueError, match="recv_window_ms"):
        WsSigner(_client(), recv_window_ms=60_001)
    with pytest.raises(TypeError, match="_generate_ws_api_signature"):
        WsSigner(SimpleNamespace(API_KEY="k"))
    with pytest.raises(ValueError, match="API key"):
        WsSigner(SimpleNamespace(API_KEY="", _generate_ws_api_signature=lambda d: ""))
    assert "efghijkl" not in repr(WsSigner(_client("abcdefghijkl")))
