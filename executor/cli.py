"""Command line: parses arguments, loads the config, and hands off to one subcommand.

Each subcommand's work lives in its own module, imported only when chosen, so
``--help`` and config errors stay fast and a broken optional part cannot stop the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from executor.config import ConfigError, load_config

EXIT_CONFIG = 2


def _common(p: argparse.ArgumentParser, top: bool = False) -> None:
    # Subcommands repeat the options so they work after the subcommand too; SUPPRESS keeps a
    # subparser's unset default from overwriting a value given before the subcommand.
    default = None if top else argparse.SUPPRESS
    p.add_argument("--config", type=Path, default=default,
                   help="extra TOML file laid over config/default.toml")
    p.add_argument("--profile", choices=("sim", "testnet", "demo", "live"), default=default,
                   help="venue to trade on (default: the config's profile, normally sim)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run.py",
        description="binance-executor: execution bot for Binance. With no subcommand it "
        "paper-trades on the embedded exchange.",
    )
    _common(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run the bot (the default)",
                         description="Run the trading bot on the configured profile.")
    _common(run)
    for p in (parser, run):
        p.add_argument("--duration", type=float, help="stop after this many seconds")
        p.add_argument("--exchange", metavar="URL",
                       help="use an embedded exchange already started with `run.py sim` "
                       "(its admin URL, e.g. http://127.0.0.1:PORT) instead of starting one")
        p.add_argument("--live", action="store_true", help="confirm a live-money run")
        p.add_argument("--log-json", action="store_true", help="write JSON log lines")
        p.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR")

    sim = sub.add_parser("sim", help="run the embedded exchange standalone",
                         description="Start the embedded Binance-compatible exchange and print "
                         "its URLs and test credentials. Ctrl-C stops it.")
    _common(sim)
    sim.add_argument("--time-scale", help="exchange clock speed relative to wall time")
    sim.add_argument("--seed", type=int, help="seed for the synthetic market")
    sim.add_argument("--port", type=int, help="first of five consecutive fixed ports "
                     "(spot REST, spot stream, WS API, futures REST, futures stream)")

    db = sub.add_parser("db", help="database maintenance", description="Database maintenance.")
    _common(db)
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    _common(db_sub.add_parser("upgrade", help="apply Alembic migrations up to the newest version"))
    _common(db_sub.add_parser("current", help="print the database's schema version"))
    ck = db_sub.add_parser("checkpoint", help="bring the audit checkpoints up to date",
                           description="Fold the ledger into its audit checkpoints (the bot does this "
                           "every [scheduler] audit_checkpoint_s), so `audit` reads only newer rows.")
    _common(ck)
    ck.add_argument("--db", help="database URL (default: the config's)")
    ck.add_argument("--settle-s", type=float, default=600.0,
                    help="leave the newest rows, this many seconds, to the audit (default 600)")
    ck.add_argument("--all", action="store_true",
                    help="fold every row recorded (for a ledger no bot is writing to)")
    ck.add_argument("--cut-ms", type=int, help="fold the rows up to this time (UTC epoch ms)")

    arc = db_sub.add_parser("archive", help="move old runs' rows into an archive database",
                            description="Move the rows of runs that stopped before DATE (orders, events, "
                            "fills, reconciliations, ...) into an archive SQLite file with the same schema; "
                            "`audit` reads the ledger and its archive together.")
    _common(arc)
    arc.add_argument("--before", required=True, metavar="DATE", help="ISO date/time (UTC) or epoch ms")
    arc.add_argument("--to", metavar="ARCHIVE_DB",
                     help="archive file (default: <ledger>-archive.db beside the ledger)")
    arc.add_argument("--db", help="database URL (default: the config's)")

    audit = sub.add_parser("audit", help="post-trade audit from the database",
                           description="Reports, ledger verification and exports, from the "
                           "database alone.")
    _common(audit)
    audit.add_argument("audit_command", nargs="?", choices=("report", "verify"), default="report")
    audit.add_argument("--run", type=int, help="only this run id")
    audit.add_argument("--since", help="ISO time or date")
    audit.add_argument("--until", help="ISO time or date")
    audit.add_argument("--symbol", help="only this symbol")
    audit.add_argument("--format", choices=("table", "csv", "json"), default="table")
    audit.add_argument("--out", type=Path, help="write files into this folder")
    audit.add_argument("--plot", action="store_true", help="draw a PNG chart per symbol")
    audit.add_argument("--db", help="database URL (default: the config's)")
    audit.add_argument("--archive", type=Path, metavar="PATH",
                       help="also read this archive (default: <ledger>-archive.db when it exists)")

    pre = sub.add_parser("preflight", help="check keys and account before a live run",
                         description="Check API key restrictions, account, clock and symbols.")
    _common(pre)
    return parser


def _overrides(args: argparse.Namespace) -> dict:
    over: dict = {}
    if getattr(args, "profile", None):
        over["profile"] = args.profile
    sim: dict = {}
    if getattr(args, "time_scale", None):
        sim["time_scale"] = args.time_scale
    if getattr(args, "seed", None) is not None:
        sim["seed"] = args.seed
    if getattr(args, "port", None):
        base = args.port
        names = ("spot_rest", "spot_stream", "spot_ws_api", "futures_rest", "futures_stream")
        sim["ports"] = {n: base + i for i, n in enumerate(names)}
    if sim:
        over["sim"] = sim
    log: dict = {}
    if getattr(args, "log_json", False):
        log["json"] = True
    if getattr(args, "log_level", None):
        log["level"] = args.log_level.upper()
    if log:
        over["logging"] = log
    return over


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = load_config(args.config, _overrides(args))
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    command = args.command or "run"
    try:
        if command == "sim":
            from executor.sim.standalone import serve

            return asyncio.run(serve(cfg))
        if command == "db" and args.db_command == "checkpoint":
            from executor.audit.checkpoint_job import checkpoint_command

            return checkpoint_command(cfg, args)
        if command == "db" and args.db_command == "archive":
            from executor.persistence.archive import archive_command

            return archive_command(cfg, args)
        if command == "db":
            from executor.persistence.migrate import db_command

            return db_command(cfg, args.db_command)
        if command == "audit":
            from executor.audit.cli import audit_command

            return audit_command(cfg, args)
        if command == "preflight":
            from executor.preflight import preflight_command

            return asyncio.run(preflight_command(cfg, args))
        from executor.app import run_command

        return run_command(cfg, args)
    except KeyboardInterrupt:
        return 130
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
