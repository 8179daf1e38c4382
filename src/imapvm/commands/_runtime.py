"""What the operator commands share: the config options, loading, the store, output helpers."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from rich.console import Console

from imapvm.audio.errors import AudioError
from imapvm.config.embedded import embedded_config_path, resolve_config
from imapvm.config.loader import DEFAULT_VOICEMAIL_PATH, LoadedConfig
from imapvm.config.settings import DEFAULT_SETTINGS_PATH, parse_override
from imapvm.message import MessageError
from imapvm.storage.base import MailboxRef, StoreError
from imapvm.storage.router import RoutingStore

err = Console(stderr=True, highlight=False, soft_wrap=True)
"""stderr; soft_wrap so that an error stays one line however narrow the terminal."""


class CommandError(Exception):
    """A problem to report in one line and exit 1 (never a traceback)."""


DEFAULT_TIMEOUT = 10.0
"""Seconds an operator command waits for an IMAP server to connect and greet (serve waits
imapopentimeout, Asterisk's 60 s, and retries in the background; a person at a prompt
should not wait that long)."""


def add_config_args(parser: argparse.ArgumentParser, *, imap_timeout: bool = True) -> None:
    parser.add_argument("--config", metavar="VOICEMAIL_CONF",
                        help=f"voicemail.conf (default: {DEFAULT_VOICEMAIL_PATH}; without it, "
                             "the embedded default, as `imapvm serve` uses)")
    parser.add_argument("--settings", metavar="IMAPVM_TOML",
                        help=f"imapvm.toml (default: {DEFAULT_SETTINGS_PATH})")
    parser.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                        type=override_arg, help="override an imapvm.toml setting (repeatable)")
    if imap_timeout:
        parser.add_argument("--timeout", metavar="SECONDS", type=_positive_seconds,
                            default=DEFAULT_TIMEOUT,
                            help="give up on an IMAP server that does not connect and greet "
                                 f"within SECONDS (default {DEFAULT_TIMEOUT:g}; a lower "
                                 "imapopentimeout in voicemail.conf wins)")


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r}: give between 0 and 3600 seconds")
    return value


def add_json_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def override_arg(text: str) -> tuple[str, object]:
    """argparse type for `--set KEY=VALUE`."""
    try:
        return parse_override(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def load_config(args: argparse.Namespace) -> LoadedConfig:
    """As `serve` resolves it: with no voicemail.conf at all, the embedded default."""
    loaded, embedded = resolve_config(args.config, args.settings, dict(args.set))
    args.embedded = embedded
    if not loaded.ok:
        errors = [d for d in loaded.diagnostics if d.severity.name.lower() == "error"]
        for d in errors:
            err.print(str(d), markup=False)
        raise CommandError(f"the configuration has {len(errors)} error(s); "
                           "run `imapvm check` for the details")
    return loaded


def open_store(loaded: LoadedConfig, open_timeout: float | None = None) -> RoutingStore:
    return RoutingStore(loaded.voicemail, loaded.settings.paths.spool,
                        loaded.settings.imap, open_timeout=open_timeout,
                        index_dir=loaded.settings.paths.cache / "imap")


def mailbox_ref(text: str, loaded: LoadedConfig) -> MailboxRef:
    """`1234` or `1234@context`, resolved as app_voicemail resolves it."""
    number, _, context = text.partition("@")
    found = loaded.voicemail.find(number, context or None)
    if found is None:
        if loaded.voicemail_path == embedded_config_path():
            raise CommandError(
                f"no mailbox {text} in the embedded default (used because "
                f"{DEFAULT_VOICEMAIL_PATH} does not exist; it has "
                f"{_listed(loaded)}); pass --config VOICEMAIL_CONF for another configuration")
        raise CommandError(f"no mailbox {text} in {loaded.voicemail_path}")
    return MailboxRef(found.number, found.context)


def _listed(loaded: LoadedConfig) -> str:
    boxes = [s.id for s in loaded.voicemail.all_effective()]
    return "mailbox " + ", ".join(boxes) if boxes else "no mailboxes"


def run_async(args: argparse.Namespace,
              body: Callable[[argparse.Namespace, LoadedConfig, RoutingStore], Awaitable[int]],
              ) -> int:
    """Load the configuration, open the store, run `body`, close the store; errors as one line."""
    async def main() -> int:
        loaded = load_config(args)
        store = open_store(loaded, getattr(args, "timeout", None))
        try:
            return await body(args, loaded, store)
        finally:
            await store.aclose()

    try:
        return asyncio.run(main())
    except (CommandError, StoreError, OSError, ValueError, AudioError, MessageError) as exc:
        err.print(f"imapvm {args.command}: {exc}", markup=False)
        return 1
    except Exception as exc:  # a bug: still one line; IMAPVM_TRACEBACK=1 shows where
        if os.environ.get("IMAPVM_TRACEBACK"):
            raise
        err.print(f"imapvm {args.command}: unexpected {type(exc).__name__}: {exc} (a bug; "
                  "run with IMAPVM_TRACEBACK=1 for the traceback and report it)", markup=False)
        return 1


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")
