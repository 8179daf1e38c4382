"""`imapvm migrate --from spool[:DIR] --to imap` (or `--from imap --to spool[:DIR]`): copy every
voicemail of the configured IMAP mailboxes between Asterisk's file spool and IMAP.

Idempotent and resumable: a message whose X-Asterisk-VM-Message-ID is already in the target
folder is skipped, so an interrupted run is simply started again. Every copied message is read
back from the target and its recording compared byte for byte with the source before the next
one; the source is never changed. Folders, heard state and urgency are kept."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from imapvm.commands._runtime import (
    CommandError,
    add_config_args,
    add_json_arg,
    mailbox_ref,
    print_json,
    run_async,
)
from imapvm.config.loader import LoadedConfig
from imapvm.config.model import StorageKind
from imapvm.storage.base import Folder, MailboxFull, MailboxRef
from imapvm.storage.imap.store import ImapStore
from imapvm.storage.router import RoutingStore
from imapvm.storage.spool import SpoolStore

FOLDERS = (Folder.INBOX, Folder.URGENT, Folder.OLD, Folder.WORK, Folder.FAMILY, Folder.FRIENDS,
           Folder.CUST1, Folder.CUST2, Folder.CUST3, Folder.CUST4, Folder.CUST5)
_EXT_HEADER = re.compile(rb"^X-Asterisk-VM-Extension:[^\r\n]*", re.I | re.M)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("migrate", help="copy voicemail between the file spool and IMAP",
                              description=__doc__)
    p.add_argument("--from", dest="source", required=True, metavar="spool[:DIR]|imap")
    p.add_argument("--to", dest="target", required=True, metavar="imap|spool[:DIR]")
    p.add_argument("--mailbox", action="append", default=[],
                   help="only this mailbox (repeatable; default: every IMAP mailbox)")
    p.add_argument("--dry-run", action="store_true", help="count, copy nothing")
    add_json_arg(p)
    add_config_args(p)
    p.set_defaults(handler=lambda args: run_async(args, _migrate))


@dataclass
class Tally:
    copied: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)


def _side(text: str, loaded: LoadedConfig, store: RoutingStore) -> ImapStore | SpoolStore:
    kind, _, where = text.partition(":")
    if kind == "imap" and not where:
        return store.imap
    if kind == "spool":
        return SpoolStore(Path(where) if where else loaded.settings.paths.spool)
    raise CommandError(f"{text!r}: expected `imap` or `spool[:DIR]`")


async def _migrate(args: argparse.Namespace, loaded: LoadedConfig, store: RoutingStore) -> int:
    source, target = _side(args.source, loaded, store), _side(args.target, loaded, store)
    if isinstance(source, SpoolStore) == isinstance(target, SpoolStore):
        raise CommandError("migrate copies between the spool and IMAP: one side of each")
    if args.mailbox:
        boxes = [mailbox_ref(m, loaded) for m in args.mailbox]
    else:
        boxes = [MailboxRef(s.mailbox, s.context) for s in loaded.voicemail.all_effective()
                 if s.storage is StorageKind.IMAP]
    for box in boxes:
        if store.settings(box).storage is not StorageKind.IMAP:
            raise CommandError(f"{box} is not configured for IMAP storage")
    results: dict[str, Tally] = {}
    console = Console(stderr=True)
    with Progress(console=console, transient=True, disable=args.json) as progress:
        task = progress.add_task("migrating", total=len(boxes))
        for box in boxes:
            tag = store.settings(box).extension_tag
            results[str(box)] = await _one(box, tag, source, target, args.dry_run)
            progress.advance(task)
    total = Tally(sum(t.copied for t in results.values()),
                  sum(t.skipped for t in results.values()),
                  [f for t in results.values() for f in t.failed])
    if args.json:
        print_json({name: t.__dict__ for name, t in results.items()}
                   | {"total": total.__dict__})
    else:
        for name, t in results.items():
            print(f"{name}: {t.copied} copied, {t.skipped} already there, {len(t.failed)} failed")
            for f in t.failed:
                print(f"  {f}")
        verb = "would copy" if args.dry_run else "copied and verified"
        print(f"total: {verb} {total.copied}, skipped {total.skipped}, failed {len(total.failed)}")
    return 1 if total.failed else 0


async def _one(box: MailboxRef, tag: str, source: ImapStore | SpoolStore,
               target: ImapStore | SpoolStore, dry_run: bool) -> Tally:
    tally = Tally()
    for folder in FOLDERS:
        messages = await source.list(box, folder)
        if not messages:
            continue
        present = {m.header("x-asterisk-vm-message-id") for m in await target.list(box, folder)}
        present.discard("")
        for m in messages:
            msg_id = m.header("x-asterisk-vm-message-id")
            if msg_id and msg_id in present:
                tally.skipped += 1
                continue
            if dry_run:
                tally.copied += 1
                continue
            try:
                await _copy(box, tag, m.ref, folder, source, target)
            except MailboxFull as exc:
                tally.failed.append(f"{folder.title} {m.ref}: {exc}; stopped this mailbox")
                return tally
            except Exception as exc:  # report and go on with the next message
                tally.failed.append(f"{folder.title} {m.ref}: {exc}")
                continue
            tally.copied += 1
    return tally


async def _copy(box: MailboxRef, tag: str, ref: object, folder: Folder,
                source: ImapStore | SpoolStore, target: ImapStore | SpoolStore) -> None:
    raw = await source.fetch(box, ref)  # type: ignore[arg-type]
    if isinstance(target, ImapStore):  # IMAP finds voicemail by this tag (imapvmshareid)
        raw = _EXT_HEADER.sub(b"X-Asterisk-VM-Extension: " + tag.encode(), raw, count=1)
    original = (await source.fetch_audio(box, ref)).message  # type: ignore[arg-type]
    new = await target.deposit(box, raw, urgent=folder is Folder.URGENT)
    if folder is Folder.OLD:
        await target.mark_heard(box, new)  # the reference stays valid on both back ends
    elif not folder.in_main_folder:
        new = await target.save_to_folder(box, new, folder)
    copy = (await target.fetch_audio(box, new, prefer=(original.fmt,))).message
    if copy.data != original.data:
        raise CommandError(f"verification failed: the copy's {copy.fmt} audio differs")
