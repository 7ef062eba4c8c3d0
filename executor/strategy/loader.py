"""Loading the configured strategy class by dotted path, with errors a user can act on.

Config ``[strategy] path = "package.module:ClassName"`` names a ``Strategy`` subclass
importable by Python (a module in the folder ``run.py`` is in, on ``PYTHONPATH``, or an
installed package); ``[strategy.params]`` is passed to its constructor. Every way this
can go wrong (malformed path, missing module, error inside the module, missing class, not
a Strategy, bad parameters) becomes one ``ConfigError`` line naming the config key, at
start, before anything connects.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from typing import Any

from executor.config import ConfigError, StrategyConfig
from executor.strategy.base import KLINE_INTERVALS, ParamError, Strategy

__all__ = ["load_strategy", "resolve_strategy_class"]

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_PATH_RE = re.compile(rf"({_IDENT}(?:\.{_IDENT})*):({_IDENT})")


def resolve_strategy_class(path: str) -> type[Strategy]:
    """Import ``package.module:ClassName`` and check it is a ``Strategy`` subclass."""
    if not isinstance(path, str) or not _PATH_RE.fullmatch(path.strip()):
        hint = ""
        if isinstance(path, str) and ":" not in path and "." in path:
            module, _, name = path.rpartition(".")
            hint = f" (did you mean \"{module}:{name}\"?)"
        raise ConfigError(f"strategy.path: expected \"package.module:ClassName\", got {path!r}{hint}")
    module_name, class_name = path.strip().split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Distinguish "the module itself does not exist" from "it imports something missing".
        if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ConfigError(f"strategy.path: no module named {module_name!r} (from {path!r})") from None
        raise ConfigError(f"strategy.path: module {module_name!r} failed to import: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a user's module may raise anything on import: one config line, exit 2
        raise ConfigError(f"strategy.path: module {module_name!r} failed to import: "
                          f"{type(exc).__name__}: {exc}") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ConfigError(f"strategy.path: module {module_name!r} has no attribute {class_name!r}")
    if not isinstance(cls, type) or not issubclass(cls, Strategy):
        raise ConfigError(f"strategy.path: {path!r} is not a subclass of "
                          "executor.strategy.base.Strategy")
    wrong = ", ".join(repr(iv) for iv in cls.candle_intervals if iv not in KLINE_INTERVALS)
    if wrong:
        raise ConfigError(f"strategy.path: {cls.__name__}.candle_intervals has {wrong}; "
                          f"Binance's kline intervals are {', '.join(KLINE_INTERVALS)}")
    return cls


def load_strategy(cfg: StrategyConfig | str, params: Mapping[str, Any] | None = None) -> Strategy:
    """Build the configured strategy: ``load_strategy(config.strategy)``.

    Also accepts a path string plus ``params``. A bad parameter raises ``ConfigError``
    naming ``strategy.params.<key>``; any other failure in the constructor is reported with
    the class name, never a bare traceback.
    """
    if isinstance(cfg, StrategyConfig):
        path, params = cfg.path, cfg.params if params is None else params
    else:
        path = cfg
    params = {} if params is None else params
    if not isinstance(params, Mapping):
        raise ConfigError("strategy.params: must be a table")
    cls = resolve_strategy_class(path)
    try:
        return cls(dict(params))
    except ParamError as exc:
        raise ConfigError(f"strategy.params.{exc.key}: {exc.message}") from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"strategy.params: {cls.__name__} refused its parameters: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a user's strategy may raise anything in __init__: one config line
        raise ConfigError(f"strategy.path: {cls.__name__} failed to start: "
                          f"{type(exc).__name__}: {exc}") from None
