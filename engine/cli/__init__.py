"""The `engine` command: run, validate, show, diff, lb-config. `main(argv) -> int` never raises.

Exit codes: 0 ok, 78 invalid profile (EX_CONFIG), 2 usage, 1 unexpected failure.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from engine import __version__
from engine.errors import EX_CONFIG, EX_FAILURE, EX_OK, EX_USAGE, ProfileError

DEFAULT_PROFILE = "development.toml"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise _UsageError


class _UsageError(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="engine",
        description="Real-time Socket.IO server assembled from one TOML profile.",
    )
    parser.add_argument("--version", action="version", version=f"engine {__version__}")
    parser.add_argument("--traceback", action="store_true", help="show tracebacks of failures")
    _run_arguments(parser)
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)

    run = commands.add_parser("run", help="serve a profile (the default command)")
    _run_arguments(run)

    validate = commands.add_parser("validate", help="check profiles; exit 78 when invalid")
    validate.add_argument("files", nargs="+", type=Path, metavar="FILE")
    validate.add_argument("--strict", action="store_true", help="treat warnings as errors")
    validate.add_argument("--format", choices=["text", "json"], default="text")
    validate.add_argument(
        "--check-env",
        action="store_true",
        help="also check this machine: handler imports, TLS files",
    )

    show = commands.add_parser("show", help="print the resolved profile (secrets redacted)")
    show.add_argument("file", type=Path, metavar="FILE")
    show.add_argument("--origin", action="store_true", help="say where each value came from")
    _check_env_argument(show)

    diff = commands.add_parser("diff", help="semantic differences between two profiles")
    diff.add_argument("old", type=Path, metavar="A")
    diff.add_argument("new", type=Path, metavar="B")
    _check_env_argument(diff)

    lb = commands.add_parser("lb-config", help="print a load balancer configuration")
    lb.add_argument("file", type=Path, metavar="PROFILE")
    lb.add_argument("--format", choices=["haproxy", "nginx"], required=True)
    lb.add_argument(
        "--listen", metavar="HOST:PORT", help="balancer address (default: its profile listen)"
    )

    reload = commands.add_parser(
        "reload", help="swap a running engine's profile (live changes only, else refused)"
    )
    reload.add_argument("--profile", type=Path, metavar="FILE", help="the profile to load")
    reload.add_argument("--url", metavar="URL", help="the engine (default: from the profile)")
    return parser


def _check_env_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--check-env",
        action="store_true",
        help="require every ${VAR} to be set (default: placeholders stand in, as in validate)",
    )


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile",
        type=Path,
        default=argparse.SUPPRESS,
        help="profile to serve (default: the embedded development profile)",
    )
    parser.add_argument(
        "--bind", default=argparse.SUPPRESS, metavar="HOST:PORT", help="listen address override"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError:
        return EX_USAGE
    except SystemExit as exc:  # --help, --version
        return int(exc.code or 0)
    try:
        return _dispatch(args)
    except ProfileError as exc:
        print(str(exc), file=sys.stderr)
        return EX_CONFIG
    except KeyboardInterrupt:
        return EX_OK
    except Exception as exc:
        if args.traceback:
            traceback.print_exc()
        else:
            print(f"engine: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
            print("engine: run with --traceback for details", file=sys.stderr)
        return EX_FAILURE


def _dispatch(args: argparse.Namespace) -> int:
    from engine.cli import inspect, lb_config, reload, run, validate

    if args.command == "validate":
        return validate.command(
            args.files, strict=args.strict, fmt=args.format, check_env=args.check_env
        )
    if args.command == "show":
        return inspect.show(args.file, origin=args.origin, check_env=args.check_env)
    if args.command == "diff":
        return inspect.diff(args.old, args.new, check_env=args.check_env)
    if args.command == "reload":
        return reload.command(args.profile, args.url)
    if args.command == "lb-config":
        return lb_config.command(args.file, fmt=args.format, listen=args.listen)
    profile = getattr(args, "profile", None)
    return run.command(profile, getattr(args, "bind", None))


def entry() -> None:
    """Console-script entry point."""
    logging.captureWarnings(True)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
