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
from dataclasses import MISSING, dataclass, field, fields, is_dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from executor.core.money import parse_decimal

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = ROOT / "data"
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
    # Futures trading (orders on the symbols' USD-M perpetuals; needs user_stream's key).
    trade: bool = False
    leverage: int = 2                 # set and checked on every traded symbol at start
    margin_type: str = "cross"        # cross or isolated, set and checked at start
    max_leverage: int = 5             # refuse to start (and to trade) above this leverage
    max_position: dict[str, Decimal] = field(default_factory=dict)   # base asset -> |perp position|
    max_net_delta: dict[str, Decimal] = field(default_factory=dict)  # base asset -> |spot + perp|
    max_gross_notional: Decimal = Decimal(0)   # (|spot| + |perp|) x mark over all assets; 0: no limit


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
    # "" (the default): the ledger's own prefix, generated when it is created
    # (executor.persistence.identity); set it only to pin one (1-8 of [A-Za-z0-9_]).
    client_id_prefix: str
    recv_window_ms: int
    request_timeout_s: Decimal
    cancel_on_shutdown: bool = True


@dataclass(frozen=True)
class DatabaseConfig:
    url: str  # "" (the default): one ledger per profile, ``default_database_url``


def default_database_url(profile: str) -> str:
    """One ledger per venue: ``<profile>.db`` in the data folder (sim: the standalone exchange
    reached with ``--exchange``; the in-process one gets a fresh file per run,
    ``app.sim_ledger_url``)."""
    return f"{profile}.db"


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
    """Process health (``executor.run.health``): how often it is logged, when it warns (0 = never)."""

    log_every_s: int = 300     # wall seconds
    warn_rss_mb: int = 1024
    warn_fds: int = 512
    warn_tasks: int = 500
    warn_loop_lag_ms: int = 250


@dataclass(frozen=True)
class ReplayConfig:
    """Replays (``python run.py --replay DIR``): the fee tier the embedded exchange charges."""

    maker_fee: Decimal = Decimal("0.001")   # Binance spot regular tier (VIP 0): 0.1000%
    taker_fee: Decimal = Decimal("0.001")
    latency_ms: int = 0                     # an order/cancel reaches the exchange this much later


@dataclass(frozen=True)
class MarketDataConfig:
    """Where the strategy's market data comes from: the order venue ("same") or another.

    ``venue = "live"`` on testnet/demo reads live public prices (bookTicker, mark price)
    while orders go to the paper venue; it never carries keys to the other venue.
    """

    venue: str = "same"


MARKET_DATA_VENUES = ("same", "sim", "testnet", "demo", "live")


@dataclass(frozen=True)
class WebConfig:
    """The dashboard and control API (``executor.web``); off unless enabled or ``--web``."""

    enabled: bool = False
    host: str = "127.0.0.1"          # another address is allowed, with a warning at start
    port: int = 8787                 # 0: a free port
    token_file: str = "data/web-token"  # used when BX_WEB_TOKEN is not set (written 0600)
    max_auth_failures: int = 20      # per client address and minute; more answer 429
    update_ms: int = 500             # live updates to the dashboard at most this often


@dataclass(frozen=True)
class AlertsConfig:
    """Alerts (``executor.alerts``). Secrets come from the environment: BX_ALERT_WEBHOOK_URL,
    BX_TELEGRAM_BOT_TOKEN, BX_TELEGRAM_CHAT_ID."""

    webhook: bool = False
    telegram: bool = False
    telegram_base_url: str = "https://api.telegram.org"
    fills: bool = False              # one alert per fill
    stale_after_s: int = 30          # a stream silent this long is reported (once until it recovers)
    daily_summary: bool = True       # at 00:00 UTC: the day's PnL, fills and orders
    retries: int = 4                 # delivery attempts after the first
    dead_log_interval_s: int = 300   # a failing channel is logged at most once per interval
    queue_size: int = 1000


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
    web: WebConfig = field(default_factory=WebConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    # The data folder (ledgers, logs, kill switch, plots); after loading, an absolute path.
    data_dir: str = "data"
    replay: ReplayConfig = field(default_factory=ReplayConfig)
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
            return parse_decimal(value, key)
        except ValueError:
            raise ConfigError(f"{where}: '{key}' is not a decimal number: {value!r} "
                              "(plain digits like \"500.5\")") from None
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
    prefix = cfg.orders.client_id_prefix
    if prefix and not (len(prefix) <= 8 and all(c.isascii() and (c.isalnum() or c == "_") for c in prefix)):
        raise ConfigError(f"{where('orders.client_id_prefix')}: 'orders.client_id_prefix' must be empty "
                          f"(the ledger's own) or 1-8 of A-Z a-z 0-9 _, got {prefix!r}")
    if not 0 < cfg.orders.recv_window_ms <= 60000:
        raise ConfigError(f"{where('orders.recv_window_ms')}: 'orders.recv_window_ms' must be 1..60000")
    if cfg.logging.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"{where('logging.level')}: 'logging.level' must be DEBUG, INFO, WARNING or ERROR")
    for name, level in cfg.logging.levels.items():
        if level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"{where('logging.levels.' + name)}: 'logging.levels.{name}' must be "
                              "DEBUG, INFO, WARNING or ERROR")
    _validate_market_data(cfg, where)
    _validate_futures(cfg, where)
    if not 0 <= cfg.web.port <= 65535:
        raise ConfigError(f"{where('web.port')}: 'web.port' must be 0..65535")
    if not cfg.web.host.strip():
        raise ConfigError(f"{where('web.host')}: 'web.host' must name an address, e.g. \"127.0.0.1\"")
    if cfg.web.update_ms < 100:
        raise ConfigError(f"{where('web.update_ms')}: 'web.update_ms' must be at least 100")
    if cfg.web.max_auth_failures < 1:
        raise ConfigError(f"{where('web.max_auth_failures')}: 'web.max_auth_failures' must be at least 1")
    if cfg.alerts.stale_after_s < 1 or cfg.alerts.queue_size < 1 or cfg.alerts.retries < 0:
        raise ConfigError(f"{where('alerts')}: 'alerts.stale_after_s' and 'alerts.queue_size' must be "
                          "at least 1, 'alerts.retries' 0 or more")
    _validate_values(cfg, where)
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

def _positive(cfg: Config, where: Any, *keys: str, zero_ok: bool = False) -> None:
    """Each dotted ``key`` of ``cfg`` must be > 0 (or >= 0 with ``zero_ok``)."""
    for key in keys:
        value: Any = cfg
        for part in key.split("."):
            value = getattr(value, part)
        if value < 0 or (value == 0 and not zero_ok):
            need = "0 or more" if zero_ok else "greater than 0"
            raise ConfigError(f"{where(key)}: '{key}' must be {need}, got {value}")


def _validate_values(cfg: Config, where: Any) -> None:
    """Every value in range: a limit of 0 or below, an empty path or a port out of range
    would otherwise be accepted and only show up as a bot that refuses everything."""
    _positive(cfg, where, "risk.max_order_notional", "risk.max_open_orders", "risk.max_orders_per_minute",
              "risk.price_band_bps", "risk.stale_after_s", "orders.request_timeout_s",
              "sim.book_update_hz", "sim.max_connection_age_s")
    _positive(cfg, where, "sim.seed", zero_ok=True)
    for asset, limit in cfg.risk.max_position.items():
        key = f"risk.max_position.{asset}"
        if not asset.isalnum() or asset.upper() != asset:
            raise ConfigError(f"{where(key)}: '{key}': asset {asset!r} must be upper-case letters/digits")
        if limit <= 0:
            raise ConfigError(f"{where(key)}: '{key}' must be greater than 0, got {limit}")
    # (``database.url`` and ``orders.client_id_prefix`` may be "": one ledger per profile, a
    # prefix generated with the ledger.)
    texts = {"risk.kill_switch_file": cfg.risk.kill_switch_file,
             "logging.dir": cfg.logging.dir, "sim.host": cfg.sim.host, "data_dir": cfg.data_dir}
    for key, text in texts.items():
        if not text.strip():
            raise ConfigError(f"{where(key)}: '{key}' must not be empty")
    for name in ("spot_rest", "spot_stream", "spot_ws_api", "futures_rest", "futures_stream"):
        port = getattr(cfg.sim.ports, name)
        if not 0 <= port <= 65535:
            key = f"sim.ports.{name}"
            raise ConfigError(f"{where(key)}: '{key}' must be 0 (a free port) to 65535, got {port}")
    for table in ("start_prices", "balances"):
        for asset, value in getattr(cfg.sim, table).items():
            key = f"sim.{table}.{asset}"
            if value < 0 or (value == 0 and table == "start_prices"):
                need = "greater than 0" if table == "start_prices" else "0 or more"
                raise ConfigError(f"{where(key)}: '{key}' must be {need}, got {value}")


def resolve_data_dir(value: str | Path) -> Path:
    """The data folder: an absolute path as given; a relative one from the repository root
    (never the working directory, so a run started elsewhere uses the same folder)."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else ROOT / path


def data_path(cfg: Config, name: str | Path) -> Path:
    """Where ``name`` lives: an absolute path as given, a relative one inside the data folder
    (``data_dir``). The one rule for every file the bot keeps (ledgers, logs, kill switch,
    plots), so a default file name is just a relative name."""
    path = Path(name).expanduser()
    return path if path.is_absolute() else resolve_data_dir(cfg.data_dir) / path


def database_url(value: str, base: Path) -> str:
    """A ``[database] url`` or ``--db`` value as a URL: a SQLAlchemy URL (``scheme://...``)
    as given, except that a relative SQLite file path is taken from ``base``; a plain path
    (``ledger.db``, ``/srv/bx/ledger.db``) becomes ``sqlite+aiosqlite:///<absolute path>``."""
    text = value.strip()
    if "://" not in text:
        path = Path(text).expanduser()
        return f"sqlite+aiosqlite:///{path if path.is_absolute() else base / path}"
    scheme, _, rest = text.partition("://")
    if scheme.startswith("sqlite") and rest.startswith("/") and not rest.startswith("//"):
        file, sep, query = rest[1:].partition("?")
        special = file.startswith((":", "file:"))  # :memory: and URI forms are left alone
        if file and not special and not Path(file).is_absolute():
            return f"{scheme}:///{base / file}{sep}{query}"
    return text


def _resolve_paths(cfg: Config) -> Config:
    """Every relative file path made absolute inside the data folder."""
    data = resolve_data_dir(cfg.data_dir)
    return replace(
        cfg, data_dir=str(data),
        database=replace(cfg.database, url=database_url(cfg.database.url, data)),
        risk=replace(cfg.risk, kill_switch_file=str(data_path(replace(cfg, data_dir=str(data)),
                                                              cfg.risk.kill_switch_file))),
        logging=replace(cfg.logging, dir=str(data / cfg.logging.dir)),
        sim=replace(cfg.sim, market_file=str(data / cfg.sim.market_file) if cfg.sim.market_file else ""))


def _validate_futures(cfg: Config, where: Any) -> None:
    fut = cfg.futures
    if fut.margin_type.lower() not in ("cross", "isolated"):
        raise ConfigError(f"{where('futures.margin_type')}: 'futures.margin_type' must be cross or isolated")
    if not 1 <= fut.max_leverage <= 125:
        raise ConfigError(f"{where('futures.max_leverage')}: 'futures.max_leverage' must be 1..125")
    if not 1 <= fut.leverage <= fut.max_leverage:
        raise ConfigError(f"{where('futures.leverage')}: 'futures.leverage' must be 1..futures.max_leverage "
                          f"({fut.max_leverage})")


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
    if not cfg.database.url:
        cfg = replace(cfg, database=replace(cfg.database, url=default_database_url(cfg.profile)))
    cfg = _resolve_paths(cfg)
    return replace(cfg, sources=tuple(name for name, _ in layers))
