"""`imapvm check`: read voicemail.conf and imapvm.toml as the server would, and say what they mean.

Prints the effective configuration of every mailbox (secrets masked), then every problem with its
file and line. Exit status 1 when there is any error, so it can gate a deployment or a reload.
"""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console

from imapvm.commands._runtime import override_arg
from imapvm.config.addresses import check_listen_addresses
from imapvm.config.loader import DEFAULT_VOICEMAIL_PATH, load
from imapvm.config.render import print_report, report_json
from imapvm.config.settings import DEFAULT_SETTINGS_PATH


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "check",
        help="validate voicemail.conf and imapvm.toml and show the effective configuration",
        description=__doc__,
    )
    parser.add_argument(
        "--config",
        metavar="VOICEMAIL_CONF",
        help=f"voicemail.conf to read (default: {DEFAULT_VOICEMAIL_PATH}, optional)",
    )
    parser.add_argument(
        "--settings",
        metavar="IMAPVM_TOML",
        help=f"imapvm.toml to read (default: {DEFAULT_SETTINGS_PATH}, optional)",
    )
    parser.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        type=override_arg,
        help="override an imapvm.toml setting, e.g. --set sip.listen='[\"0.0.0.0:5070\"]' "
        "or --set paths.outbox=/srv/outbox (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="print a machine-readable document")
    parser.add_argument(
        "--full", action="store_true", help="list every effective setting of every mailbox"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    loaded = load(args.config, args.settings, dict(args.set))
    check_listen_addresses(loaded, loaded.diagnostics)
    if args.json:
        json.dump(report_json(loaded), sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        interactive = sys.stdout.isatty()
        console = Console(file=sys.stdout, width=None if interactive else 160)
        print_report(loaded, console, full=args.full)
    return 1 if loaded.diagnostics.has_errors else 0
