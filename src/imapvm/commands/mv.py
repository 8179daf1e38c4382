"""`imapvm mv MAILBOX ID FOLDER`: move a voicemail to another folder (Old and INBOX are a flag
change, as on the phone; other folders are a real move)."""

from __future__ import annotations

import argparse

from imapvm.commands._runtime import add_config_args, mailbox_ref, run_async
from imapvm.config.loader import LoadedConfig
from imapvm.storage.base import Folder, MessageRef
from imapvm.storage.router import RoutingStore


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("mv", help="move a voicemail to a folder", description=__doc__)
    p.add_argument("mailbox")
    p.add_argument("id", help="message id as printed by `imapvm ls`")
    p.add_argument("folder", help="INBOX, Old, Work, Family, Friends, Cust1-5 (or 0-9)")
    add_config_args(p)
    p.set_defaults(handler=lambda args: run_async(args, _mv))


async def _mv(args: argparse.Namespace, loaded: LoadedConfig, store: RoutingStore) -> int:
    box = mailbox_ref(args.mailbox, loaded)
    folder = Folder.from_name(args.folder)
    if folder is Folder.URGENT:
        raise ValueError("Urgent is not a folder one saves to (as on the phone)")
    new = await store.save_to_folder(box, MessageRef.parse(args.id), folder)
    print(new)
    return 0
