"""Typed configuration: loading, overlaying and validating the TOML files.

``config/default.toml`` is always read; ``config/local.toml`` (untracked) and any
``--config FILE`` overlay it key by key. Validation is strict because a typo in a risk
limit must stop the bot, not be ignored: an unknown key, a wrong type or a missing value
raises ``ConfigError`` naming the key and the file. Secrets never live here.
"""

from __future__ import annotations

import tomllib
import types
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FILE = ROOT / "config" / "default.toml"
LOCAL_FILE = ROOT / "config" / "local.toml"
PROFILES = ("sim", "testnet", "demo", "live")


class ConfigError(Exception):
    """A configuration problem, phrased as one line a user can act on."""


@dataclass(frozen=True)
class Symbols:
    spot: list[str]


@dataclass(frozen=True)
class StrategyConfig:
    path: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FuturesConfig:
    """USD-M futures user data. Mark prices are public and always streamed; the account's
    listenKey stream (ORDER_TRADE_UPDATE / ACCOUNT_UPDATE) needs a key with futures enabled."""

    user_stream: bool = False


@dataclass(frozen=True)
class RiskConfig:
    max_order_notional: Decimal
    max_open_orders: int
    max_orders_per_minute: int
    price_band_bps: Decimal
    stale_after_s: Decimal
    kill_switch_file: str
    max_position: dict[str, Decimal]


@dataclass(frozen=True)
class OrdersConfig:
    client_id_prefix: str
    recv_window_ms: int
    request_timeout_s: Decimal
    cancel_on_shutdown: bool = True


@dataclass(frozen=True)
class DatabaseConfig:
    url: str


@dataclass(frozen=True)
class SchedulerConfig:
    futures_keepalive_s: int
    daily_reconnect_s: int
    reconcile_s: int
    balance_snapshot_s: int
    clock_sync_s: int
    # Wall seconds (not scaled by the sim's time_scale: it is this machine's CPU work).
    audit_checkpoint_s: int = 900
    audit_settle_s: int = 600  # rows newer than this stay out of the checkpoint (the audit folds them)


@dataclass(frozen=True)
class LoggingConfig:
    level: str
    json: bool
    dir: str
    levels: dict[str, str] = field(default_factory=dict)   # logger name -> level override
    rotate: str = "daily"      # daily (at UTC midnight) | size (at max_bytes)
    max_bytes: int = 50 * 1024 * 1024
    keep_files: int = 30       # log files kept in dir (all runs, rotated ones included); older are deleted


@dataclass(frozen=True)
class HealthConfig:
    """Process health (``executor.health``): how often it is logged, when it warns (0 = never)."""

    log_every_s: int = 300     # wall seconds
    warn_rss_mb: int = 1024
    warn_fds: int = 512
    warn_tasks: int = 500
    warn_loop_lag_ms: int = 250


@dataclass(frozen=True)
class MarketDataConfig:
    """Where the strategy's market data comes from: the order venue ("same") or another.

    ``venue = "live"`` on testnet/demo reads live public prices (bookTicker, mark price)
    while orders go to the paper venue; it never carries keys to the other venue.
    """

    venue: str = "same"


MARKET_DATA_VENUES = ("same", "sim", "testnet", "demo", "live")


@dataclass(frozen=True)
class SimPorts:
    spot_rest: int
    spot_stream: int
    spot_ws_api: int
    futures_rest: int
    futures_stream: int


@dataclass(frozen=True)
class SimConfig:
    seed: int
    time_scale: Decimal
    host: str
    book_update_hz: Decimal
    max_connection_age_s: int
    market_file: str
    ports: SimPorts
    start_prices: dict[str, Decimal]
    balances: dict[str, Decimal]
    keep_ledgers: int = 10     # per-run ledgers kept under <db dir>/sim/ (older ones are deleted)


@dataclass(frozen=True)
class Config:
    profile: str
    symbols: Symbols
    futures: FuturesConfig
    strategy: StrategyConfig
    risk: RiskConfig
    orders: OrdersConfig
    database: DatabaseConfig
    scheduler: SchedulerConfig
    logging: LoggingConfig
    sim: SimConfig
    market_data: MarketDataConfig = field(default_factory=MarketDataConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    sources: tuple[str, ...] = ()


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _origin(key: str, layers: list[tuple[str, dict[str, Any]]]) -> str:
    """The last file that set ``key`` (dotted), so errors name the right file."""
    found = layers[0][0] if layers else "<config>"
    for name, data in layers:
        node: Any = data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                node = MISSING
                break
            node = node[part]
        if node is not MISSING:
            found = name
    return found


def _convert(value: Any, tp: Any, key: str, where_fn: Any) -> Any:
    where = where_fn(key)
    origin = typing.get_origin(tp)
    if is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: '{key}' must be a table")
        return _build(tp, value, key, where_fn)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: '{key}' must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: '{key}' must be an integer, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: '{key}' must be a string, got {value!r}")
        return value
    if tp is Decimal:
        # Floats are refused: a TOML float has already lost the exact decimal value.
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ConfigError(f"{where}: '{key}' must be a decimal written as a string, e.g. \"0.5\"")
        try:
            dec = Decimal(str(value))
        except InvalidOperation:
            raise ConfigError(f"{where}: '{key}' is not a decimal number: {value!r}") from None
        if not dec.is_finite():
            raise ConfigError(f"{where}: '{key}' must be finite")
        return dec
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: '{key}' must be a list")
        return [_convert(v, item_tp, key, where_fn) for v in value]
    if origin is dict:
        _, val_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: '{key}' must be a table")
        return {k: _convert(v, val_tp, f"{key}.{k}", where_fn) for k, v in value.items()}
    if origin is tuple:
        return tuple(value)
    if origin in (typing.Union, types.UnionType):
        raise ConfigError(f"{where}: '{key}' has an unsupported type")
    raise ConfigError(f"{where}: '{key}' has an unsupported type {tp!r}")


def _build(cls: Any, data: dict[str, Any], prefix: str, where: Any) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)} - {"sources"}
    for key in data:
        if key not in known:
            dotted = f"{prefix}.{key}" if prefix else key
            raise ConfigError(f"{where(dotted)}: unknown key '{dotted}'")
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        if f.name == "sources":
            continue
        dotted = f"{prefix}.{f.name}" if prefix else f.name
        if f.name not in data:
            if f.default is not MISSING or f.default_factory is not MISSING:
                continue
            raise ConfigError(f"{where(dotted)}: missing key '{dotted}'")
        kwargs[f.name] = _convert(data[f.name], hints[f.name], dotted, where)
    return cls(**kwargs)


def _validate(cfg: Config, where: Any) -> None:
    if cfg.profile not in PROFILES:
        raise ConfigError(f"{where('profile')}: 'profile' must be one of {', '.join(PROFILES)}")
    if not cfg.symbols.spot:
        raise ConfigError(f"{where('symbols.spot')}: 'symbols.spot' must name at least one symbol")
    for sym in cfg.symbols.spot:
        if not sym.isalnum() or sym.upper() != sym:
            raise ConfigError(f"{where('symbols.spot')}: symbol {sym!r} must be upper-case letters/digits")
    if cfg.sim.time_scale <= 0:
        raise ConfigError(f"{where('sim.time_scale')}: 'sim.time_scale' must be positive")
    for name in ("futures_keepalive_s", "daily_reconnect_s", "reconcile_s", "balance_snapshot_s",
                 "clock_sync_s"):
        if getattr(cfg.scheduler, name) <= 0:
            raise ConfigError(f"{where('scheduler.' + name)}: 'scheduler.{name}' must be positive")
    if cfg.scheduler.audit_settle_s < 0:
        key = "scheduler.audit_settle_s"
        raise ConfigError(f"{where(key)}: '{key}' must be 0 or positive")
    if cfg.scheduler.audit_checkpoint_s < 0:
        key = "scheduler.audit_checkpoint_s"
        raise ConfigError(f"{where(key)}: '{key}' must be 0 (never) or positive")
    if cfg.scheduler.daily_reconnect_s >= 86400:
        key = "scheduler.daily_reconnect_s"
        raise ConfigError(f"{where(key)}: '{key}' must be under 86400 (Binance cuts at 24 h)")
    if not 0 < cfg.orders.recv_window_ms <= 60000:
        raise ConfigError(f"{where('orders.recv_window_ms')}: 'orders.recv_window_ms' must be 1..60000")
    if cfg.logging.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"{where('logging.level')}: 'logging.level' must be DEBUG, INFO, WARNING or ERROR")
    for name, level in cfg.logging.levels.items():
        if level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"{where('logging.levels.' + name)}: 'logging.levels.{name}' must be "
                              "DEBUG, INFO, WARNING or ERROR")
    _validate_market_data(cfg, where)
    _validate_retention(cfg, where)


def _validate_retention(cfg: Config, where: Any) -> None:
    if cfg.logging.rotate not in ("daily", "size"):
        raise ConfigError(f"{where('logging.rotate')}: 'logging.rotate' must be daily or size")
    for key, value in (("logging.max_bytes", cfg.logging.max_bytes),
                       ("logging.keep_files", cfg.logging.keep_files),
                       ("sim.keep_ledgers", cfg.sim.keep_ledgers),
                       ("health.log_every_s", cfg.health.log_every_s)):
        if value < 1:
            raise ConfigError(f"{where(key)}: '{key}' must be at least 1")
    for name in ("warn_rss_mb", "warn_fds", "warn_tasks", "warn_loop_lag_ms"):
        if getattr(cfg.health, name) < 0:
            raise ConfigError(f"{where('health.' + name)}: 'health.{name}' must be 0 (never) or positive")


def _validate_market_data(cfg: Config, where: Any) -> None:
    venue = cfg.market_data.venue
    if venue not in MARKET_DATA_VENUES:
        raise ConfigError(f"{where('market_data.venue')}: 'market_data.venue' must be one of "
                          f"{', '.join(MARKET_DATA_VENUES)}")
    if venue in ("same", cfg.profile):
        return
    # The sim matches against its own book, so it cannot take prices from elsewhere, and
    # no other venue can price against the sim; live money must trade on live prices.
    if cfg.profile in ("sim", "live") or venue == "sim":
        raise ConfigError(f"{where('market_data.venue')}: 'market_data.venue' = {venue!r} is not "
                          f"possible with profile {cfg.profile!r}; use \"same\"")


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def load_config(
    extra: Path | str | None = None,
    overrides: dict[str, Any] | None = None,
    default: Path = DEFAULT_FILE,
    local: Path | None = LOCAL_FILE,
) -> Config:
    """Read default, local and ``extra`` files, apply ``overrides``, validate."""
    layers: list[tuple[str, dict[str, Any]]] = [(str(default), _read(default))]
    if local is not None and local.exists():
        layers.append((str(local), _read(local)))
    if extra is not None:
        layers.append((str(extra), _read(Path(extra))))
    if overrides:
        layers.append(("command line", overrides))
    merged: dict[str, Any] = {}
    for _, data in layers:
        # Parameters belong to one strategy: a layer that switches strategy.path starts its
        # params afresh instead of inheriting the previous strategy's keys.
        new_path = data.get("strategy", {}).get("path")
        old_path = merged.get("strategy", {}).get("path")
        if new_path is not None and new_path != old_path and "strategy" in merged:
            merged["strategy"] = {k: v for k, v in merged["strategy"].items() if k != "params"}
        merged = _merge(merged, data)

    def where(key: str) -> str:
        return _origin(key, layers)

    cfg = _build(Config, merged, "", where)
    _validate(cfg, where)
    return Config(**{**cfg.__dict__, "sources": tuple(name for name, _ in layers)})
