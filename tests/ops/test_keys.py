"""Credentials come from the profile's own variables only, with clear errors."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from executor.venue.endpoints import TESTNET
from executor.venue.keys import KeysError, load_credentials
from executor.venue.profiles import make_client

ALL_PROFILES_ENV = {
    "BX_TESTNET_API_KEY": "tn-key", "BX_TESTNET_API_SECRET": "tn-secret",
    "BX_DEMO_API_KEY": "demo-key", "BX_DEMO_API_SECRET": "demo-secret",
    "BX_LIVE_API_KEY": "live-key", "BX_LIVE_API_SECRET": "live-secret",
}


class SpyEnv(dict):
    """An environment mapping that records every name read."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.read: list[str] = []

    def get(self, key, default=None):
        self.read.append(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.read.append(key)
        return super().__getitem__(key)


def _write_env(path: Path, values: dict[str, str], mode: int = 0o600) -> Path:
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    os.chmod(path, mode)
    return path


@pytest.mark.parametrize("profile", ["testnet", "demo", "live"])
def test_each_profile_reads_only_its_own_variables(profile: str, tmp_path: Path) -> None:
    env = SpyEnv(ALL_PROFILES_ENV)
    dotenv = _write_env(tmp_path / ".env", {k: "from-file-" + v for k, v in ALL_PROFILES_ENV.items()})
    creds = load_credentials(profile, environ=env, env_files=[dotenv])
    prefix = {"testnet": "tn", "demo": "demo", "live": "live"}[profile]
    assert creds is not None
    assert creds.api_key == f"{prefix}-key" and creds.api_secret == f"{prefix}-secret"
    own = f"BX_{profile.upper()}_"
    assert env.read and all(name.startswith(own) for name in env.read), env.read


def test_testnet_never_falls_back_to_live_keys(tmp_path: Path) -> None:
    env = SpyEnv({"BX_LIVE_API_KEY": "live-key", "BX_LIVE_API_SECRET": "live-secret"})
    dotenv = _write_env(tmp_path / ".env", {"BX_LIVE_API_KEY": "x", "BX_LIVE_API_SECRET": "y"})
    with pytest.raises(KeysError) as err:
        load_credentials("testnet", environ=env, env_files=[dotenv])
    assert not any("LIVE" in name for name in env.read)
    assert "live-secret" not in str(err.value)


def test_missing_keys_message_names_the_variables(tmp_path: Path) -> None:
    with pytest.raises(KeysError) as err:
        load_credentials("live", environ={}, env_files=[tmp_path / ".env"])
    text = str(err.value)
    for name in ("BX_LIVE_API_KEY", "BX_LIVE_API_SECRET", "BX_LIVE_PRIVATE_KEY_FILE",
                 "BX_LIVE_PRIVATE_KEY_PASS"):
        assert name in text
    assert "TESTNET" not in text
    # a key without its secret is just as missing
    with pytest.raises(KeysError, match="BX_TESTNET_API_SECRET"):
        load_credentials("testnet", environ={"BX_TESTNET_API_KEY": "k"}, env_files=[])


def test_missing_keys_stop_the_cli_with_exit_2(tmp_path: Path, monkeypatch, capsys) -> None:
    from executor.cli import main

    for name in ALL_PROFILES_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("executor.venue.keys.ROOT", tmp_path)
    assert main(["preflight", "--profile", "testnet"]) == 2
    assert "BX_TESTNET_API_KEY" in capsys.readouterr().err


def test_dotenv_is_read_without_touching_os_environ(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("BX_DEMO_API_KEY", raising=False)
    dotenv = _write_env(tmp_path / ".env", {"BX_DEMO_API_KEY": "file-key", "BX_DEMO_API_SECRET": "file-sec"})
    creds = load_credentials("demo", environ={}, env_files=[dotenv])
    assert creds and creds.api_key == "file-key" and creds.api_secret == "file-sec"
    assert "BX_DEMO_API_KEY" not in os.environ


def test_environment_wins_over_dotenv(tmp_path: Path) -> None:
    dotenv = _write_env(tmp_path / ".env", {"BX_DEMO_API_KEY": "file-key", "BX_DEMO_API_SECRET": "file-sec"})
    creds = load_credentials("demo", environ={"BX_DEMO_API_KEY": "env-key"}, env_files=[dotenv])
    assert creds and creds.api_key == "env-key" and creds.api_secret == "file-sec"


def test_default_env_files_are_repo_root_and_cwd(tmp_path: Path, monkeypatch) -> None:
    root, cwd = tmp_path / "root", tmp_path / "cwd"
    root.mkdir()
    cwd.mkdir()
    _write_env(root / ".env", {"BX_TESTNET_API_KEY": "root-key", "BX_TESTNET_API_SECRET": "root-sec"})
    _write_env(cwd / ".env", {"BX_TESTNET_API_SECRET": "cwd-sec"})
    monkeypatch.setattr("executor.venue.keys.ROOT", root)
    monkeypatch.chdir(cwd)
    creds = load_credentials("testnet", environ={})
    assert creds and creds.api_key == "root-key" and creds.api_secret == "cwd-sec"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_group_or_world_readable_dotenv_warns(mode: int, tmp_path: Path, caplog) -> None:
    dotenv = _write_env(tmp_path / ".env", {"BX_DEMO_API_KEY": "k", "BX_DEMO_API_SECRET": "s-secret"}, mode)
    with caplog.at_level(logging.WARNING, logger="executor.venue.keys"):
        load_credentials("demo", environ={}, env_files=[dotenv])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("readable by group or others" in w and "chmod 600" in w for w in warnings)
    assert not any("s-secret" in w for w in warnings)


def test_private_dotenv_does_not_warn(tmp_path: Path, caplog) -> None:
    dotenv = _write_env(tmp_path / ".env", {"BX_DEMO_API_KEY": "k", "BX_DEMO_API_SECRET": "s"}, 0o600)
    with caplog.at_level(logging.WARNING, logger="executor.venue.keys"):
        load_credentials("demo", environ={}, env_files=[dotenv])
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_sim_needs_no_keys() -> None:
    assert load_credentials("sim", environ={}, env_files=[]) is None


def test_secret_and_key_file_together_is_refused(tmp_path: Path) -> None:
    env = {"BX_LIVE_API_KEY": "k", "BX_LIVE_API_SECRET": "s", "BX_LIVE_PRIVATE_KEY_FILE": "/x.pem"}
    with pytest.raises(KeysError, match="set only one"):
        load_credentials("live", environ=env, env_files=[])


def _pem(key, password: bytes | None = None) -> str:
    enc = BestAvailableEncryption(password) if password else NoEncryption()
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, enc).decode()


async def test_ed25519_key_file_works_with_python_binance(tmp_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    pem_file = tmp_path / "ed.pem"
    pem_file.write_text(_pem(key, b"pass-phrase-1234"))
    os.chmod(pem_file, 0o600)
    env = {"BX_TESTNET_API_KEY": "k", "BX_TESTNET_PRIVATE_KEY_FILE": str(pem_file),
           "BX_TESTNET_PRIVATE_KEY_PASS": "pass-phrase-1234"}
    creds = load_credentials("testnet", environ=env, env_files=[])
    assert creds and creds.kind == "Ed25519" and creds.api_secret is None
    assert "pass-phrase-1234" in creds.secrets()
    client = make_client(TESTNET, creds)   # python-binance loads and can sign with it
    try:
        assert client._is_rsa is False
        assert client._generate_signature({"symbol": "BTCUSDT", "timestamp": 1})
    finally:
        await client.close_connection()


async def test_rsa_key_file_works_with_python_binance(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem_file = tmp_path / "rsa.pem"
    pem_file.write_text(_pem(key))
    env = {"BX_LIVE_API_KEY": "k", "BX_LIVE_PRIVATE_KEY_FILE": str(pem_file)}
    creds = load_credentials("live", environ=env, env_files=[])
    assert creds and creds.kind == "RSA"
    client = make_client(TESTNET, creds)
    try:
        assert client._is_rsa is True
        assert client._generate_signature({"symbol": "BTCUSDT", "timestamp": 1})
    finally:
        await client.close_connection()


def test_bad_key_file_gives_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(KeysError, match="BX_DEMO_PRIVATE_KEY_FILE: cannot read private key file"):
        load_credentials("demo", environ={"BX_DEMO_API_KEY": "k", "BX_DEMO_PRIVATE_KEY_FILE": str(missing)},
                         env_files=[])
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key at all")
    with pytest.raises(KeysError, match="not a usable PEM private key"):
        load_credentials("demo", environ={"BX_DEMO_API_KEY": "k", "BX_DEMO_PRIVATE_KEY_FILE": str(garbage)},
                         env_files=[])
    enc = tmp_path / "enc.pem"
    enc.write_text(_pem(ed25519.Ed25519PrivateKey.generate(), b"right-password"))
    with pytest.raises(KeysError, match="not a usable PEM"):
        load_credentials("demo", environ={"BX_DEMO_API_KEY": "k", "BX_DEMO_PRIVATE_KEY_FILE": str(enc),
                                          "BX_DEMO_PRIVATE_KEY_PASS": "wrong-password"}, env_files=[])
