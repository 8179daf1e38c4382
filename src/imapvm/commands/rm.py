"""`imapvm rm MAILBOX ID [ID ...]`: delete voicemails, and nothing else (see README, Storage)."""

from __future__ import annotations

import argparse

from imapvm.commands._runtime import add_config_args, mailbox_ref, run_async
from imapvm.config.loader import LoadedConfig
from imapvm.storage.base import MessageRef
from imapvm.storage.router import RoutingStore


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("rm", help="delete voicemails", description=__doc__)
    p.add_argument("mailbox")
    p.add_argument("ids", nargs="+", metavar="ID", help="message ids as printed by `imapvm ls`")
    add_config_args(p)
    p.set_defaults(handler=lambda args: run_async(args, _rm))


async def _rm(args: argparse.Namespace, loaded: LoadedConfig, store: RoutingStore) -> int:
    box = mailbox_ref(args.mailbox, loaded)
    refs = [MessageRef.parse(i) for i in args.ids]
    await store.delete(box, refs)
    print(f"deleted {len(refs)} voicemail(s) from {box}")
    return 0
