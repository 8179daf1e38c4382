"""`imapvm ls MAILBOX[@CONTEXT]`: the voicemails of a mailbox, per folder, as the phone sees them.

Listing never marks anything read."""

from __future__ import annotations

import argparse
import sys
import time

from rich.console import Console
from rich.table import Table

from imapvm.commands._runtime import (
    add_config_args,
    add_json_arg,
    mailbox_ref,
    print_json,
    run_async,
)
from imapvm.config.loader import LoadedConfig
from imapvm.storage.base import Folder, StoredMessage
from imapvm.storage.router import RoutingStore

DEFAULT_FOLDERS = (Folder.URGENT, Folder.INBOX, Folder.OLD, Folder.WORK, Folder.FAMILY,
                   Folder.FRIENDS, Folder.CUST1, Folder.CUST2, Folder.CUST3, Folder.CUST4,
                   Folder.CUST5)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("ls", help="list a mailbox's voicemails", description=__doc__)
    p.add_argument("mailbox", help="mailbox number, optionally @context")
    p.add_argument("--folder", help="one folder (INBOX, Old, Urgent, Work, ... or 0-9, 11)")
    add_json_arg(p)
    add_config_args(p)
    p.set_defaults(handler=lambda args: run_async(args, _ls))


def _row(m: StoredMessage) -> dict[str, object]:
    name, num = m.caller_id
    return {
        "id": str(m.ref), "folder": m.folder.title, "received": m.orig_time,
        "caller_name": name, "caller_number": num, "duration": m.duration,
        "state": "urgent" if m.urgent else ("old" if m.seen else "new"),
        "size": m.size,
    }


def print_table(console: Console, title: str, rows: list[dict[str, object]]) -> None:
    table = Table(title=title)
    for col in ("folder", "#", "received", "caller", "duration", "state"):
        table.add_column(col)
    # The id is copied into rm/export: never cut, never folded; other columns give way.
    widest = max((len(str(r["id"])) for r in rows), default=2)
    table.add_column("id", no_wrap=True, overflow="ignore", min_width=widest)
    counters: dict[str, int] = {}
    for r in rows:
        n = counters[str(r["folder"])] = counters.get(str(r["folder"]), 0) + 1
        table.add_row(str(r["folder"]), str(n), received_text(r["received"]),
                      caller_text(str(r["caller_name"]), str(r["caller_number"])),
                      f"{r['duration']} s", str(r["state"]), str(r["id"]))
    console.print(table)
    if not rows:
        console.print("no voicemail")


def caller_text(name: str, number: str) -> str:
    """`Name <number>`, `Name`, `<number>`... as the caller id was given, brackets whole."""
    if name and number:
        return f"{name} <{number}>"
    return name or number or "unknown"


def received_text(value: object) -> str:
    """Local time of an X-Asterisk-VM-Orig-time; a value no clock can show is shown as is."""
    try:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(int(str(value or 0))))
    except (OverflowError, OSError, ValueError):
        return f"? ({value})"


async def _ls(args: argparse.Namespace, loaded: LoadedConfig, store: RoutingStore) -> int:
    box = mailbox_ref(args.mailbox, loaded)
    folders = [Folder.from_name(args.folder)] if args.folder else list(DEFAULT_FOLDERS)
    rows = []
    for folder in folders:
        rows += [_row(m) for m in await store.list(box, folder)]
    if args.json:
        print_json({"mailbox": str(box), "where": store.describe(box), "messages": rows})
        return 0
    # In a pipe, as wide as the rows need (rich would assume 80 columns and cut).
    console = Console() if sys.stdout.isatty() else Console(width=100_000)
    print_table(console, f"{box}  ({store.describe(box)})", rows)
    return 0
