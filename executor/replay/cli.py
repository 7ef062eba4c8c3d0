"""The replay room's subcommands (``record``, ``data import``, ``sweep``) and the dispatch of
``--replay`` on ``run``/``sim``; ``executor/cli.py`` only hooks these in."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from executor.config import Config

# ``add_parsers`` runs for every command line, `audit` included: the pydantic config and
# asyncio are imported by ``replay_main``, where they are used (bench/RESULTS.md, "#16 audit
# start-up and teardown").


def add_parsers(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    rec = sub.add_parser(
        "record",
        help="record public market streams into a recording",
        description="Record spot bookTicker, USDⓈ-M bookTicker and markPrice@1s (with "
        "funding) into hourly gzip JSONL chunks (format: executor/replay/format.py). "
        "Live public streams unless --exchange or --profile says otherwise; no key needed.",
    )
    common(rec)
    rec.add_argument("--symbols", help="comma-separated, e.g. BTCUSDT,ETHUSDT (default: the config's)")
    rec.add_argument("--duration", type=float, help="stop after this many seconds (default: Ctrl-C)")
    rec.add_argument("--out", help="recording folder (default data/recordings/<UTC time>Z)")
    rec.add_argument(
        "--exchange", metavar="URL", help="record from an embedded exchange started with `run.py sim`"
    )

    data = sub.add_parser(
        "data",
        help="convert Binance public data files",
        description="Binance's public historical data (data.binance.vision).",
    )
    common(data)
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    imp = data_sub.add_parser(
        "import",
        help="CSV/ZIP files into a recording",
        description="Import bookTicker, aggTrades and markPriceKlines files (ZIP or "
        "CSV, columns as Binance documents them) into one recording.",
    )
    common(imp)
    imp.add_argument("files", nargs="+", help="the files")
    imp.add_argument("--out", required=True, help="recording folder to create")
    imp.add_argument(
        "--kind",
        choices=("bookTicker", "aggTrades", "markPriceKlines"),
        help="data type when the file names do not say",
    )
    imp.add_argument(
        "--market",
        choices=("spot", "futures"),
        default="spot",
        help="market of bookTicker/aggTrades files whose path does not say (default spot)",
    )

    sw = sub.add_parser(
        "sweep",
        help="replay once per parameter combination, in parallel",
        description="Replay a recording once per combination of strategy parameters, one "
        "process per core, each with its own ledger; print the audit's headline figures.",
    )
    common(sw)
    sw.add_argument("--replay", metavar="DIR", required=True, help="the recording")
    sw.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=V1,V2",
        help="a [strategy.params] value list; repeat for more parameters",
    )
    sw.add_argument("--jobs", type=int, help="parallel processes (default: the number of cores)")
    sw.add_argument("--out", help="folder for the ledgers and sweep.csv (default data/sweeps/<UTC time>Z)")
    sw.add_argument("--sort", default="net", help="column to sort by, descending (default net)")


def replay_main(cfg: Config, args: argparse.Namespace, command: str) -> int:
    import asyncio

    from executor.config import ConfigError

    if command == "record":
        from executor.replay.recorder import record_command

        return record_command(cfg, args)
    if command == "data":
        from executor.replay.importer import data_command

        return data_command(args)
    if command == "sweep":
        from executor.replay.sweep import sweep_command

        return sweep_command(cfg, args)
    folder = Path(args.replay)
    if not folder.is_dir():
        raise ConfigError(f"--replay: {folder} is not a folder")
    if command == "sim":
        from executor.replay.runner import parse_speed, serve_replay

        return asyncio.run(serve_replay(cfg, folder, parse_speed(getattr(args, "speed", "1"))))
    if getattr(args, "exchange", None):
        print("--replay starts its own exchange; drop --exchange", file=sys.stderr)
        return 2
    from executor.replay.runner import replay_command

    return replay_command(cfg, args)
