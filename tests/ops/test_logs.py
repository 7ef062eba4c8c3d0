"""Log setup: per-run file, text or JSON lines, levels, and secret redaction everywhere."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from executor.config import load_config
from executor.exchange.credentials import Credentials
from executor.run.logs import MASK, Redactor, installed_by_setup, setup_logging

SECRET = "Zq8SECRETvalue-4f1c9a7e2b6d0c3f5a8e1d4b7c0a3f6e"
PEM_SECRET = ("-----BEGIN PRIVATE KEY-----\n"
              "MC4CAQAwBQYDK2VwBCIEIPEMlinewithsecretmaterial0123456789abcd\n"
              "-----END PRIVATE KEY-----\n")


@pytest.fixture
def logsetup(tmp_path: Path):
    root = logging.getLogger()
    level = root.level
    made = []

    def make(json_lines: bool = False, level_name: str | None = None, overrides: dict | None = None):
        cfg = load_config(local=None, overrides=overrides)
        stream = io.StringIO()
        redactor = Redactor()
        setup = setup_logging(cfg, json=json_lines, level=level_name, log_dir=tmp_path / "logs",
                              stream=stream, redactor=redactor,
                              secrets=[Credentials(api_key="public-key-123", api_secret=SECRET)])
        made.append(setup)
        return setup, stream

    yield make
    for setup in made:
        setup.close()
    root.setLevel(level)


def _everything(setup, stream) -> str:
    for h in setup.handlers:
        h.flush()
    return stream.getvalue() + "\n" + setup.path.read_text()


def _leaky_logging() -> None:
    log = logging.getLogger("executor.test.leak")
    log.info("secret in message " + SECRET)
    log.info("secret in args %s and %r", SECRET, {"k": SECRET})
    log.info("url https://api.binance.com/api/v3/order?symbol=BTCUSDT&timestamp=1&signature=abc123def456")
    log.info("ws params %s", {"apiKey": "public-key-123", "signature": "deadbeefcafe"})
    log.warning("extra", extra={"payload": {"secret": SECRET}})
    try:
        raise RuntimeError(f"boom with {SECRET}")
    except RuntimeError:
        log.exception("failed while holding %s", "nothing")
    try:
        raise ValueError("bad PEM line MC4CAQAwBQYDK2VwBCIEIPEMlinewithsecretmaterial0123456789abcd")
    except ValueError as exc:
        log.error("key problem: %s", exc, exc_info=True)


@pytest.mark.parametrize("json_lines", [False, True])
def test_secret_is_scrubbed_from_messages_args_exceptions_and_extras(logsetup, json_lines: bool) -> None:
    setup, stream = logsetup(json_lines)
    setup.redactor.add(PEM_SECRET)
    _leaky_logging()
    text = _everything(setup, stream)
    assert SECRET not in text
    assert "abc123def456" not in text and "deadbeefcafe" not in text
    assert "MC4CAQAwBQYDK2VwBCIEIPEMlinewithsecretmaterial0123456789abcd" not in text
    assert "signature=" + MASK in text
    assert "boom with " + MASK in text
    assert "Traceback" in text and "RuntimeError" in text
    assert "public-key-123" in text     # the API key is not a secret


def test_json_lines_are_json(logsetup) -> None:
    setup, stream = logsetup(json_lines=True)
    _leaky_logging()
    lines = [ln for ln in setup.path.read_text().splitlines() if ln.strip()]
    records = [json.loads(ln) for ln in lines]
    assert len(records) == 7
    assert {"ts", "level", "logger", "msg"} <= set(records[0])
    assert records[0]["logger"] == "executor.test.leak" and records[0]["level"] == "INFO"
    assert records[4]["payload"] == {"secret": MASK}
    assert "RuntimeError" in records[5]["exc"]
    assert stream.getvalue().splitlines()[0] == lines[0]


def test_text_lines_by_default(logsetup) -> None:
    _setup, stream = logsetup()
    logging.getLogger("executor.x").info("hello %s", "world")
    line = stream.getvalue().strip()
    assert line.endswith("INFO    executor.x: hello world")
    assert line[:4].isdigit() and "Z " in line


def test_one_file_per_run_and_run_id_rename(logsetup, tmp_path: Path) -> None:
    first, _ = logsetup()
    logging.getLogger("executor").info("first run")
    first.close()
    second, _ = logsetup()
    logging.getLogger("executor").info("second run")
    assert first.path != second.path and first.path.parent == second.path.parent == tmp_path / "logs"
    assert "first run" in first.path.read_text() and "first run" not in second.path.read_text()
    old = second.path
    new = second.attach_run_id(42)
    logging.getLogger("executor").info("after rename")
    assert not old.exists() and new.name.endswith("-run42.log")
    assert "second run" in new.read_text() and "after rename" in new.read_text()


def test_levels_configurable(logsetup) -> None:
    _setup, stream = logsetup(level_name="WARNING",
                             overrides={"logging": {"levels": {"executor.chatty": "DEBUG"}}})
    logging.getLogger("executor.quiet").info("not shown")
    logging.getLogger("executor.quiet").warning("shown warning")
    logging.getLogger("executor.chatty").debug("shown debug")
    out = stream.getvalue()
    assert "not shown" not in out and "shown warning" in out and "shown debug" in out
    logging.getLogger("executor.chatty").setLevel(logging.NOTSET)


def test_setup_replaces_its_own_handlers(logsetup) -> None:
    logsetup()
    logsetup()
    ours = [h for h in logging.getLogger().handlers if installed_by_setup(h)]
    assert len(ours) == 2


@settings(max_examples=60, deadline=None)
@given(secret=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=8, max_size=64),
       before=st.text(max_size=30), after=st.text(max_size=30))
def test_redactor_removes_any_registered_secret(secret: str, before: str, after: str) -> None:
    red = Redactor()
    red.add(secret)
    assert secret not in red.redact(before + secret + after + secret)
