"""The ``albgate`` command: one sub-command per module of this package, listed in ``COMMANDS``.

Job: parse the command line, run the chosen sub-command, turn expected failures (bad scenario, unknown
strategy, no credentials) into one clear line on stderr and a non-zero exit code. ``COMMANDS`` maps each
sub-command's name to its module; every such module has ``HELP`` (its line in ``albgate --help``),
``DESCRIPTION``, ``add_arguments(parser)`` and ``run(args) -> int``. A new sub-command is a new module and a
new row in the table; importing this package imports none of them (``build_parser`` does).
Invariant: ``main`` returns the sub-command's exit code (0 on success, 1 when a run went wrong, 3 when
``watch`` saw a rollback) and 2 on bad input; it never prints a traceback for bad input.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> module; listed in the order `albgate --help` shows them.
COMMANDS: dict[str, str] = {
    "demo": "albgate.cli.demo",
    "preflight": "albgate.cli.preflight",
    "release": "albgate.cli.release",
    "simulate": "albgate.cli.simulate",
    "start": "albgate.cli.start",
    "watch": "albgate.cli.watch",
}


class UsageError(Exception):
    """Bad input on the command line or in a file it names: exit code 2, one line on stderr."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="albgate", description="Zero-downtime rollouts for Kubernetes Deployments on EKS behind an ALB"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module_name in COMMANDS.items():
        command = importlib.import_module(module_name)
        p = sub.add_parser(name, help=command.HELP, description=command.DESCRIPTION)
        command.add_arguments(p)
        p.set_defaults(handler=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except UsageError as exc:
        print(f"albgate {args.command}: error: {exc}", file=sys.stderr)
        return 2
