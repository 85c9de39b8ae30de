"""`wmplan` command line: a thin composition root.

Each sub-command lives in `wmplan/cli_commands/<name>.py` and defines `NAME`, `HELP`,
`add_arguments(parser)` and `run(args) -> int`. They are discovered here, so adding a command never
edits this file.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from wmplan import __version__, cli_commands


class CLIError(Exception):
    """A user-facing error: printed as one line, exit code 2, no traceback."""


def _commands() -> list:
    modules = [importlib.import_module(f"wmplan.cli_commands.{m.name}") for m in pkgutil.iter_modules(cli_commands.__path__)]
    return sorted((m for m in modules if hasattr(m, "NAME")), key=lambda m: m.NAME)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wmplan", description="World-model planning: collect, train, plan, benchmark.")
    parser.add_argument("--version", action="version", version=f"wmplan {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in _commands():
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (CLIError, ValueError, FileNotFoundError) as err:
        print(f"wmplan {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"wmplan {args.command}: interrupted; re-run the same command to resume.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
