"""Typed configuration: loading, overlaying and validating the TOML files.

``config/default.toml`` is always read; ``config/local.toml`` (untracked) and any
``--config FILE`` overlay it key by key. Validation is strict because a typo in a risk
limit must stop the bot, not be ignored: an unknown key, a wrong type, a value out of range
or a missing value raises ``ConfigError``, one line naming the key and the file that set it.
The schema is declared with pydantic v2 (dataclasses with ``extra="forbid"``, strict scalar
types, range constraints); ``_one_line`` turns pydantic's first error into that line. Checks
that span several keys (leverage under its cap, market data venue vs profile) follow the
schema. Secrets never live here.
"""

from __future__ import annotations

import tomllib
from dataclasses import MISSING, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
)
from pydantic.dataclasses import dataclass
from pydantic_core import PydanticCustomError

from executor.core.money import parse_decimal
from executor.paths import ROOT

# ``database_url`` lives with the other URL helpers (no SQLAlchemy, no pydantic there, so `audit
# --db` can use it without this module); imported here for ``_resolve_paths`` and old callers.
from executor.persistence.urls import database_url

DEFAULT_DATA_DIR = ROOT / "data"
DEFAULT_FILE = ROOT / "config" / "default.toml"
LOCAL_FILE = ROOT / "config" / "local.toml"
PROFILES = ("sim", "testnet", "demo", "live")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

# Every table forbids keys it does not declare: a misspelt limit must not be ignored.
_SCHEMA = ConfigDict(extra="forbid")


def _bad(message: str) -> PydanticCustomError:
    """A value error whose text follows the key in the one-line message."""
    return PydanticCustomError("bx_value", message)


def _decimal(value: Any) -> Decimal:
    # Floats are refused: a TOML float has already lost the exact decimal value. Decimal
    # instances pass (``dataclasses.replace`` re-validates a loaded config).
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _bad('must be a decimal written as a string, e.g. "0.5"')
    try:
        return parse_decimal(value, "value")
    except ValueError:
        raise _bad(f'is not a decimal number: {value!r} (plain digits like "500.5")') from None


def _non_empty(text: str) -> str:
    if not text.strip():
        raise _bad("must not be empty")
    return text


def _upper_name(what: str) -> Any:
    def check(text: str) -> str:
        if not text or not text.isalnum() or text.upper() != text:
            raise _bad(f"{what} {text!r} must be upper-case letters/digits")
        return text
    return AfterValidator(check)


def _between(lo: int, hi: int, note: str = "") -> Any:
    def check(value: int) -> int:
        if not lo <= value <= hi:
            raise _bad(f"must be {lo}..{hi}{note}")
        return value
    return AfterValidator(check)


def _one_of(*choices: str, fold: bool = False) -> Any:
    def check(text: str) -> str:
        if (text.upper() if fold else text) not in choices:
            raise _bad(f"must be one of {', '.join(choices)}")
        return text
    return AfterValidator(check)


def _client_id_prefix(prefix: str) -> str:
    if prefix and not (len(prefix) <= 8 and all(c.isascii() and (c.isalnum() or c == "_") for c in prefix)):
        raise _bad(f"must be empty (the ledger's own) or 1-8 of A-Z a-z 0-9 _, got {prefix!r}")
    return prefix


def _some_symbols(symbols: list[str]) -> list[str]:
    if not symbols:
        raise _bad("must name at least one symbol")
    return symbols


Dec = Annotated[Decimal, BeforeValidator(_decimal)]
PosDec = Annotated[Decimal, BeforeValidator(_decimal), Field(gt=0)]
NonNegDec = Annotated[Decimal, BeforeValidator(_decimal), Field(ge=0)]
PosInt = Annotated[StrictInt, Field(gt=0)]
NonNegInt = Annotated[StrictInt, Field(ge=0)]
AtLeast1 = Annotated[StrictInt, Field(ge=1)]
Port = Annotated[StrictInt, _between(0, 65535, " (0: a free port)")]
Text = Annotated[StrictStr, AfterValidator(_non_empty)]
Asset = Annotated[StrictStr, _upper_name("asset")]
SymbolName = Annotated[StrictStr, _upper_name("symbol")]
LogLevel = Annotated[StrictStr, _one_of(*LOG_LEVELS, fold=True)]


class ConfigError(Exception):
    """A configuration problem, phrased as one line a user can act on."""


@dataclass(frozen=True, config=_SCHEMA)
class Symbols:
    spot: Annotated[list[SymbolName], AfterValidator(_some_symbols)]


@dataclass(frozen=True, config=_SCHEMA)
class StrategyConfig:
    path: Text
    params: dict[StrictStr, Any] = field(default_factory=dict)


@dataclass(frozen=True, config=_SCHEMA)
class FuturesConfig:
    """USD-M futures user data. Mark prices are public and always streamed; the account's
    listenKey stream (ORDER_TRADE_UPDATE / ACCOUNT_UPDATE) needs a key with futures enabled."""

    user_stream: StrictBool = False
    # Futures trading (orders on the symbols' USD-M perpetuals; needs user_stream's key).
    trade: StrictBool = False
    # Leverage and margin type are set and checked on every traded symbol at start; a
    # leverage above max_leverage refuses to start (and to trade).
    leverage: Annotated[StrictInt, _between(1, 125)] = 2
    margin_type: Annotated[StrictStr, _one_of("CROSS", "ISOLATED", fold=True)] = "cross"
    max_leverage: Annotated[StrictInt, _between(1, 125)] = 5
    max_position: dict[Asset, PosDec] = field(default_factory=dict)    # base asset -> |perp position|
    max_net_delta: dict[Asset, PosDec] = field(default_factory=dict)   # base asset -> |spot + perp|
    max_gross_notional: NonNegDec = Decimal(0)   # (|spot| + |perp|) x mark over all assets; 0: no limit
    # Refuse to add to a perpetual position while the mark is within this many percent of its
    # liquidation price (reducing always passes); 0: no check; below 100.
    min_liquidation_distance_pct: Annotated[Decimal, BeforeValidator(_decimal), Field(ge=0, lt=100)] = \
        Decimal(10)


@dataclass(frozen=True, config=_SCHEMA)
class RiskConfig:
    max_order_notional: PosDec
    max_open_orders: PosInt
    max_orders_per_minute: PosInt
    price_band_bps: PosDec
    stale_after_s: PosDec
    kill_switch_file: Text
    max_position: dict[Asset, PosDec]


@dataclass(frozen=True, config=_SCHEMA)
class OrdersConfig:
    # "" (the default): the ledger's own prefix, generated when it is created
    # (executor.persistence.identity); set it only to pin one (1-8 of [A-Za-z0-9_]).
    client_id_prefix: Annotated[StrictStr, AfterValidator(_client_id_prefix)]
    recv_window_ms: Annotated[StrictInt, _between(1, 60000)]
    request_timeout_s: PosDec
    cancel_on_shutdown: StrictBool = True


@dataclass(frozen=True, config=_SCHEMA)
class DatabaseConfig:
    url: StrictStr  # "" (the default): one ledger per profile, ``default_database_url``


def default_database_url(profile: str) -> str:
    """One ledger per venue: ``<profile>.db`` in the data folder (sim: the standalone exchange
    reached with ``--exchange``; the in-process one gets a fresh file per run,
    ``app.sim_ledger_url``)."""
    return f"{profile}.db"


@dataclass(frozen=True, config=_SCHEMA)
class SchedulerConfig:
    futures_keepalive_s: PosInt
    # Binance cuts every connection at 24 h: the planned reconnect must come first.
    daily_reconnect_s: Annotated[StrictInt, _between(1, 86399, " (Binance cuts at 24 h)")]
    reconcile_s: PosInt
    balance_snapshot_s: PosInt
    clock_sync_s: PosInt
    # Wall seconds (not scaled by the sim's time_scale: it is this machine's CPU work).
    audit_checkpoint_s: NonNegInt = 900   # 0: never
    audit_settle_s: NonNegInt = 600  # rows newer than this stay out of the checkpoint (the audit folds them)


@dataclass(frozen=True, config=_SCHEMA)
class LoggingConfig:
    level: LogLevel
    json: StrictBool
    dir: Text
    levels: dict[StrictStr, LogLevel] = field(default_factory=dict)   # logger name -> level override
    rotate: Literal["daily", "size"] = "daily"  # daily (at UTC midnight) | size (at max_bytes)
    max_bytes: AtLeast1 = 50 * 1024 * 1024
    keep_files: AtLeast1 = 30   # log files kept in dir (all runs, rotated ones included); older are deleted


@dataclass(frozen=True, config=_SCHEMA)
class HealthConfig:
    """Process health (``executor.run.health``): how often it is logged, when it warns (0 = never)."""

    log_every_s: AtLeast1 = 300     # wall seconds
    warn_rss_mb: NonNegInt = 1024
    warn_fds: NonNegInt = 512
    warn_tasks: NonNegInt = 500
    warn_loop_lag_ms: NonNegInt = 250


@dataclass(frozen=True, config=_SCHEMA)
class ReplayConfig:
    """Replays (``python run.py --replay DIR``): the fee tier the embedded exchange charges."""

    maker_fee: NonNegDec = Decimal("0.001")   # Binance spot regular tier (VIP 0): 0.1000%
    taker_fee: NonNegDec = Decimal("0.001")
    latency_ms: NonNegInt = 0                 # an order/cancel reaches the exchange this much later


MARKET_DATA_VENUES = ("same", "sim", "testnet", "demo", "live")


@dataclass(frozen=True, config=_SCHEMA)
class MarketDataConfig:
    """Where the strategy's market data comes from: the order venue ("same") or another.

    ``venue = "live"`` on testnet/demo reads live public prices (bookTicker, mark price)
    while orders go to the paper venue; it never carries keys to the other venue.
    """

    venue: Annotated[StrictStr, _one_of(*MARKET_DATA_VENUES)] = "same"


@dataclass(frozen=True, config=_SCHEMA)
class WebConfig:
    """The dashboard and control API (``executor.web``); off unless enabled or ``--web``."""

    enabled: StrictBool = False
    host: Text = "127.0.0.1"         # another address is allowed, with a warning at start
    port: Port = 8787                # 0: a free port
    token_file: StrictStr = "data/web-token"  # used when BX_WEB_TOKEN is not set (written 0600)
    max_auth_failures: AtLeast1 = 20  # per client address and minute; more answer 429
    update_ms: Annotated[StrictInt, Field(ge=100)] = 500  # live updates to the dashboard at most this often


@dataclass(frozen=True, config=_SCHEMA)
class AlertsConfig:
    """Alerts (``executor.alerts``). Secrets come from the environment: BX_ALERT_WEBHOOK_URL,
    BX_TELEGRAM_BOT_TOKEN, BX_TELEGRAM_CHAT_ID."""

    webhook: StrictBool = False
    telegram: StrictBool = False
    telegram_base_url: Text = "https://api.telegram.org"
    fills: StrictBool = False          # one alert per fill
    stale_after_s: AtLeast1 = 30       # a stream silent this long is reported (once until it recovers)
    daily_summary: StrictBool = True   # at 00:00 UTC: the day's PnL, fills and orders
    retries: NonNegInt = 4             # delivery attempts after the first
    dead_log_interval_s: AtLeast1 = 300  # a failing channel is logged at most once per interval
    queue_size: AtLeast1 = 1000


@dataclass(frozen=True, config=_SCHEMA)
class SimPorts:
    spot_rest: Port
    spot_stream: Port
    spot_ws_api: Port
    futures_rest: Port
    futures_stream: Port


@dataclass(frozen=True, config=_SCHEMA)
class SimConfig:
    seed: NonNegInt
    time_scale: PosDec
    host: Text
    book_update_hz: NonNegDec   # 0: no synthetic book updates (a replay's recording moves the book)
    max_connection_age_s: PosInt
    market_file: StrictStr
    ports: SimPorts
    start_prices: dict[SymbolName, PosDec]
    balances: dict[Asset, NonNegDec]
    keep_ledgers: AtLeast1 = 10     # per-run ledgers kept under <db dir>/sim/ (older ones are deleted)


@dataclass(frozen=True, config=_SCHEMA)
class Config:
    profile: Annotated[StrictStr, _one_of(*PROFILES)]
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
    data_dir: Text = "data"
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    sources: tuple[str, ...] = ()   # the files read, in order (set by load_config, not by a file)


_CONFIG = TypeAdapter(Config)


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


# pydantic's error types -> what follows "'key'" in the one-line message.
_PHRASES = {
    "int_type": "must be an integer, got {input!r}",
    "bool_type": "must be true or false, got {input!r}",
    "string_type": "must be a string, got {input!r}",
    "list_type": "must be a list",
    "dict_type": "must be a table",
    "dataclass_type": "must be a table",
    "greater_than": "must be greater than {gt}, got {input}",
    "greater_than_equal": "must be {ge} or more, got {input}",
    "less_than": "must be under {lt}, got {input}",
    "less_than_equal": "must be {le} or less, got {input}",
    "literal_error": "must be one of {expected}",
}


def _one_line(exc: ValidationError, where: Any) -> ConfigError:
    """pydantic's first error as ``<file>: '<key>' <what is wrong>``."""
    err = exc.errors(include_url=False)[0]
    key = ".".join(str(p) for p in err["loc"] if isinstance(p, str) and p != "[key]")
    origin = where(key)
    kind = err["type"]
    if kind == "unexpected_keyword_argument":
        return ConfigError(f"{origin}: unknown key '{key}'")
    if kind in ("missing", "missing_argument"):
        return ConfigError(f"{origin}: missing key '{key}'")
    if kind == "bx_value":
        return ConfigError(f"{origin}: '{key}' {err['msg']}")
    phrase = _PHRASES.get(kind)
    if phrase is None:
        return ConfigError(f"{origin}: '{key}': {err['msg']}")
    return ConfigError(f"{origin}: '{key}' " + phrase.format(input=err.get("input"), **err.get("ctx", {})))


def _validate(cfg: Config, where: Any) -> None:
    """The checks that span several keys (each key alone passed the schema)."""
    _validate_market_data(cfg, where)
    fut = cfg.futures
    if fut.leverage > fut.max_leverage:
        raise ConfigError(f"{where('futures.leverage')}: 'futures.leverage' must be 1..futures.max_leverage "
                          f"({fut.max_leverage})")


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


def _validate_market_data(cfg: Config, where: Any) -> None:
    venue = cfg.market_data.venue
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

    if "sources" in merged:  # set below, never by a file
        raise ConfigError(f"{where('sources')}: unknown key 'sources'")
    try:
        cfg = _CONFIG.validate_python(merged)
    except ValidationError as exc:
        raise _one_line(exc, where) from None
    _validate(cfg, where)
    if not cfg.database.url:
        cfg = replace(cfg, database=replace(cfg.database, url=default_database_url(cfg.profile)))
    cfg = _resolve_paths(cfg)
    return replace(cfg, sources=tuple(name for name, _ in layers))
