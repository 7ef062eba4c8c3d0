"""Command line: parses arguments, loads the config, and hands off to one subcommand.

Each subcommand's work lives in its own module, imported only when chosen, so
``--help`` and config errors stay fast and a broken optional part cannot stop the rest.
The same goes for what this module needs only for some commands: the pydantic config
(``executor.config``) and asyncio are imported where used, because ``audit --db FILE``
reads no configuration (``_reads_no_config``) and needs neither (~0.15 s of its start-up;
bench/RESULTS.md, "#16 audit start-up and teardown").
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from executor.loaded import if_loaded
from executor.persistence.urls import database_url
from executor.run.failures import EXIT_CONFIG, classify

if TYPE_CHECKING:
    from executor.config import Config


class _Parser(argparse.ArgumentParser):
    """argparse with a usage error as one line (the code stays 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_CONFIG, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _seconds(text: str) -> float:
    """``--duration``: a finite number of seconds greater than 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds greater than 0, got {text!r}")
    return value


def _common(p: argparse.ArgumentParser, top: bool = False) -> None:
    # Subcommands repeat the options so they work after the subcommand too; SUPPRESS keeps a
    # subparser's unset default from overwriting a value given before the subcommand.
    default = None if top else argparse.SUPPRESS
    p.add_argument("--config", type=Path, default=default,
                   help="extra TOML file laid over config/default.toml")
    p.add_argument("--profile", choices=("sim", "testnet", "demo", "live"), default=default,
                   help="venue to trade on (default: the config's profile, normally sim)")
    p.add_argument("--data-dir", default=default, metavar="DIR",
                   help="folder for the ledgers, logs, kill switch and plots (default: the "
                   "config's data_dir, normally the repository's data/)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
        p.add_argument("--duration", type=_seconds, help="stop after this many seconds")
        p.add_argument("--exchange", metavar="URL",
                       help="use an embedded exchange already started with `run.py sim` "
                       "(its admin URL, e.g. http://127.0.0.1:PORT) instead of starting one")
        p.add_argument("--live", action="store_true", help="confirm a live-money run")
        p.add_argument("--log-json", action="store_true", help="write JSON log lines")
        p.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR")
        p.add_argument("--web", metavar="HOST:PORT",
                       help="serve the dashboard, control API and /metrics here (e.g. 127.0.0.1:8787); "
                       "see [web] in the config")
        p.add_argument("--replay", metavar="DIR", help="trade on a recording (executor/replay) instead of "
                       "live or synthetic data; see README 'Record and replay'")
        p.add_argument("--speed", help="with --replay: N times real time, or max (default; deterministic)")
        p.add_argument("--db", help="with --replay: the ledger file "
                       "(default data/replay/<recording>-<time>.db)")

    sim = sub.add_parser("sim", help="run the embedded exchange standalone",
                         description="Start the embedded Binance-compatible exchange and print "
                         "its URLs and test credentials. Ctrl-C stops it.")
    _common(sim)
    sim.add_argument("--time-scale", help="exchange clock speed relative to wall time")
    sim.add_argument("--seed", type=int, help="seed for the synthetic market")
    sim.add_argument("--port", type=int, help="first of five consecutive fixed ports "
                     "(spot REST, spot stream, WS API, futures REST, futures stream)")
    sim.add_argument("--replay", metavar="DIR", help="drive the market from a recording")
    sim.add_argument("--speed", default="1", help="with --replay: N times real time (default 1) or max")

    from executor.replay.cli import add_parsers as add_replay_parsers

    add_replay_parsers(sub, _common)

    db = sub.add_parser("db", help="database maintenance", description="Database maintenance.")
    _common(db)
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    _common(db_sub.add_parser("upgrade", help="apply Alembic migrations up to the newest version"))
    _common(db_sub.add_parser("current", help="print the database's schema version"))
    ck = db_sub.add_parser("checkpoint", help="bring the audit checkpoints up to date",
                           description="Fold the ledger into its audit checkpoints (the bot does this "
                           "every [scheduler] audit_checkpoint_s), so `audit` reads only newer rows.")
    _common(ck)
    ck.add_argument("--db", help="database file or URL (default: the config's)")
    ck.add_argument("--settle-s", type=float, default=600.0,
                    help="leave the newest rows, this many seconds, to the audit (default 600)")
    ck.add_argument("--all", action="store_true",
                    help="fold every row recorded (for a ledger no bot is writing to)")
    ck.add_argument("--cut-ms", type=int, help="fold the rows up to this time (UTC epoch ms)")

    cp = db_sub.add_parser("copy", help="copy a ledger to another database (SQLite <-> PostgreSQL)",
                           description="Copy every row of a ledger into another database, in batches "
                           "with progress; run it again to resume an interrupted copy. Then the audit "
                           "report and audit verify are computed on both sides and must agree. Exit "
                           "codes: 0 copied and the audits agree, 1 they differ, 2 not copied. Stop "
                           "the bot writing to the source first.")
    _common(cp)
    cp.add_argument("--from", dest="from_url", required=True, metavar="URL", help="the ledger to copy")
    cp.add_argument("--to", dest="to_url", required=True, metavar="URL",
                    help="where to (migrated to the newest schema; empty or an earlier copy)")
    cp.add_argument("--batch", type=int, default=5000, help="rows per transaction (default 5000)")
    cp.add_argument("--no-check", action="store_true", help="skip comparing the audits afterwards")
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
    audit.add_argument("audit_command", nargs="?", choices=("report", "trades", "daily", "verify", "carry"),
                       default="report", help="report (default), trades (one line per fill), daily "
                       "(per UTC day), verify (balances against events), carry (cash-and-carry positions)")
    audit.add_argument("--run", type=int, help="only this run id")
    audit.add_argument("--since", help="ISO time or date")
    audit.add_argument("--until", help="ISO time or date")
    audit.add_argument("--symbol", help="only this symbol")
    audit.add_argument("--format", choices=("table", "csv", "json"), default="table")
    audit.add_argument("--out", type=Path, help="write files into this folder")
    audit.add_argument("--plot", action="store_true",
                       help="draw a PNG per symbol: bid/ask, mark and fills, equity at mark below")
    audit.add_argument("--plot-dir", type=Path,
                       help="folder for --plot (default: --out, else beside a --db ledger, "
                       "else the data folder's plots/)")
    audit.add_argument("--db", help="database file or URL (default: the config's)")
    audit.add_argument("--bot", help="on a shared PostgreSQL: this bot's ledger (its ?bot=NAME schema), "
                       "or 'all' for every bot and a fleet summary table")

    chaos = sub.add_parser("chaos", help="prove exactly-once on this install under faults and SIGKILLs",
                           description="Start the embedded exchange, run the bot against it while "
                           "switching random faults on and off and SIGKILLing and restarting it, then "
                           "compare the ledger with the exchange's ground truth and run audit verify. "
                           "Exit 0 when everything matches, 1 on any difference.")
    _common(chaos)
    chaos.add_argument("--minutes", type=float, default=10.0, help="how long to torment the bot (default 10)")
    chaos.add_argument("--seed", type=int, help="reproduce a run's schedule of faults and kills")
    chaos.add_argument("--keep", type=Path,
                       help="work folder for the ledger and bot logs (default: a temp dir)")
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
    if getattr(args, "data_dir", None):
        # A path typed on the command line is the user's, from where they typed it.
        over["data_dir"] = os.path.abspath(os.path.expanduser(args.data_dir))
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
    if getattr(args, "web", None):
        over["web"] = _web_address(args.web)
    return over


def _web_address(text: str) -> dict:
    """``--web HOST:PORT`` (``[::1]:PORT`` for IPv6) as ``[web]`` overrides."""
    from executor.config import ConfigError

    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--web: expected HOST:PORT such as 127.0.0.1:8787, got {text!r}")
    return {"enabled": True, "host": host, "port": int(port)}


def _reads_no_config(command: str, args: argparse.Namespace) -> bool:
    """``audit --db LEDGER`` without ``--config``: the ledger is named and nothing of the config
    is used (it would only choose the ledger, and the plots folder when no ledger is named), so
    the config files are not read. Auditing a ledger then does not depend on this checkout's
    bot configuration (a ``config/local.toml`` mid-edit or from another version); a ``--config``
    given by hand is still read and checked (exit code 2 when bad)."""
    return command == "audit" and bool(getattr(args, "db", None)) and getattr(args, "config", None) is None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = (getattr(args, "log_level", None) or "").upper() == "DEBUG"
    command = args.command or "run"
    cfg: Config | None = None
    try:
        overrides = _overrides(args)  # checked for every command (a bad --web is exit 2 anyway)
        if not _reads_no_config(command, args):
            from executor.config import load_config

            cfg = load_config(args.config, overrides)
    # Only executor.config raises it (``_web_address`` imports it to), so `audit --db` does
    # not import the pydantic config just to name the class (``executor.loaded``).
    except if_loaded("executor.config", "ConfigError") as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if getattr(args, "db", None):
        # ``--db`` takes a file path (from the working directory, as typed) or a URL.
        args.db = database_url(args.db, Path.cwd())
    try:
        return _dispatch(command, cfg, args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - any failure: one line and its exit code (traceback at DEBUG)
        # Whatever a subcommand did not handle: one line and its exit code; the traceback
        # only when asked for with --log-level DEBUG.
        failure = classify(exc, database=getattr(args, "db", None) or (cfg.database.url if cfg else None))
        if debug:
            traceback.print_exc()
        print(failure.line, file=sys.stderr)
        return failure.code


def _dispatch(command: str, cfg: Config | None, args: argparse.Namespace) -> int:
    if command == "audit":
        from executor.audit.cli import audit_command

        return audit_command(cfg, args)
    # Every other command has its config (``_reads_no_config`` is for `audit` alone).
    assert cfg is not None
    if command in ("record", "data", "sweep") or getattr(args, "replay", None):
        from executor.replay.cli import replay_main

        return replay_main(cfg, args, command)
    if command == "sim":
        import asyncio

        from executor.sim.standalone import serve

        return asyncio.run(serve(cfg))
    if command == "db" and args.db_command == "checkpoint":
        from executor.audit.checkpoint_job import checkpoint_command

        return checkpoint_command(cfg, args)
    if command == "db" and args.db_command == "archive":
        from executor.persistence.archive import archive_command

        return archive_command(cfg, args)
    if command == "db" and args.db_command == "copy":
        from executor.persistence.copy import copy_command

        return copy_command(args.from_url, args.to_url, batch=args.batch, check=not args.no_check)
    if command == "db":
        from executor.persistence.migrate import db_command

        return db_command(cfg, args.db_command)
    if command == "chaos":
        from executor.chaos.runner import chaos_command

        return chaos_command(args.minutes, args.seed, args.keep)
    if command == "preflight":
        import asyncio

        from executor.venue.preflight import preflight_command

        return asyncio.run(preflight_command(cfg, args))
    from executor.run.app import run_command

    return run_command(cfg, args)
