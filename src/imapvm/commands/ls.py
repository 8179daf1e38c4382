"""`imapvm ls MAILBOX[@CONTEXT]`: the voicemails of a mailbox, per folder, as the phone sees them.

Listing never marks anything read."""

from __future__ import annotations

import argparse
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


async def _ls(args: argparse.Namespace, loaded: LoadedConfig, store: RoutingStore) -> int:
    box = mailbox_ref(args.mailbox, loaded)
    folders = [Folder.from_name(args.folder)] if args.folder else list(DEFAULT_FOLDERS)
    rows = []
    for folder in folders:
        rows += [_row(m) for m in await store.list(box, folder)]
    if args.json:
        print_json({"mailbox": str(box), "where": store.describe(box), "messages": rows})
        return 0
    table = Table(title=f"{box}  ({store.describe(box)})")
    for col in ("folder", "#", "received", "caller", "duration", "state", "id"):
        table.add_column(col)
    counters: dict[str, int] = {}
    for r in rows:
        n = counters[str(r["folder"])] = counters.get(str(r["folder"]), 0) + 1
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(int(r["received"] or 0)))  # type: ignore[call-overload]
        caller = f"{r['caller_name']} <{r['caller_number']}>".strip(" <>") or "unknown"
        table.add_row(str(r["folder"]), str(n), when, caller, f"{r['duration']} s",
                      str(r["state"]), str(r["id"]))
    Console().print(table)
    if not rows:
        Console().print("no voicemail")
    return 0
