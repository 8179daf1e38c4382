"""`imapvm outbox`: what is waiting to be stored or sent, what was refused for good and why, and
`imapvm outbox retry` to put refused items back once their cause is fixed.

Deposits wait in `<paths.outbox>/pending` until the store has them; one the store refused for
good (mailbox full, login refused, a mailbox it cannot hold) is kept in `rejected/`. E-mail
notifications wait in `<paths.outbox>/mail`; one an SMTP server refused for good (5xx: unknown
recipient, message refused) is kept in `mail/rejected/`. Nothing is ever dropped. A retried
deposit is first looked for by its Message-ID, so it never lands twice; a running server picks
retried items up within a minute (deposits within 10 s), or at its next start.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

from imapvm.commands._runtime import (
    CommandError,
    add_config_args,
    add_json_arg,
    err,
    load_config,
    print_json,
)
from imapvm.notify import queue as mail_queue
from imapvm.notify.queue import MailItem
from imapvm.storage import outbox as deposits
from imapvm.storage.outbox import OutboxItem


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("outbox", help="list waiting and refused deposits and e-mails; "
                                             "retry refused ones", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    ls = sub.add_parser("ls", help="list (the default)")
    retry = sub.add_parser("retry", help="put refused items back in the queue")
    retry.add_argument("ids", nargs="*", metavar="ID", help="ids as printed by `imapvm outbox`")
    retry.add_argument("--all", action="store_true", help="every refused item")
    for parser in (p, ls, retry):
        parser.add_argument("--dir", metavar="OUTBOX", type=Path,
                            help="the outbox directory (default: paths.outbox of imapvm.toml; "
                                 "another node's, to look after it)")
        add_config_args(parser, imap_timeout=False)
    add_json_arg(p)
    add_json_arg(ls)
    p.set_defaults(handler=_main)


@dataclass
class Row:
    kind: str  # deposit, email, pager
    state: str  # waiting, rejected
    id: str
    mailbox: str
    created: float
    attempts: int
    last_error: str

    def as_json(self) -> dict[str, object]:
        return {"kind": self.kind, "state": self.state, "id": self.id, "mailbox": self.mailbox,
                "created": self.created, "attempts": self.attempts,
                "last_error": self.last_error}


def _main(args: argparse.Namespace) -> int:
    try:
        directory = _directory(args)
        if args.action == "retry":
            return _retry(args, directory)
        return _list(args, directory)
    except (CommandError, OSError, ValueError) as exc:
        err.print(f"imapvm outbox: {exc}", markup=False)
        return 1


def _directory(args: argparse.Namespace) -> Path:
    directory = args.dir or load_config(args).settings.paths.outbox
    if not directory.is_dir():
        raise CommandError(f"{directory}: no such outbox directory (nothing was ever queued "
                           "there, or paths.outbox points elsewhere)")
    return directory


def _rows(directory: Path) -> list[Row]:
    rows: list[Row] = []

    def deposit(item: OutboxItem, state: str) -> Row:
        return Row("deposit", state, item.id, f"{item.mailbox}@{item.context}", item.created,
                   item.attempts, item.last_error)

    def mail(item: MailItem, state: str) -> Row:
        return Row(item.kind, state, item.id, f"{item.mailbox}@{item.context}", item.created,
                   item.attempts, item.last_error)

    rows += [deposit(i, "waiting") for i in deposits.pending_items(directory)]
    rows += [deposit(i, "rejected") for i in deposits.rejected_items(directory)]
    rows += [mail(i, "waiting") for i in mail_queue.waiting(directory / "mail")]
    rows += [mail(i, "rejected") for i in mail_queue.rejected(directory / "mail")]
    return rows


def _list(args: argparse.Namespace, directory: Path) -> int:
    rows = _rows(directory)
    if getattr(args, "json", False):
        print_json({"outbox": str(directory), "items": [r.as_json() for r in rows]})
        return 0
    if not rows:
        print(f"{directory}: empty (every deposit is stored, every e-mail sent)")
        return 0
    now = time.time()
    print(f"{directory}:")
    for r in rows:
        why = f"  {r.last_error}" if r.last_error else ""
        print(f"  {r.state:8s} {r.kind:7s} {r.id}  {r.mailbox:16s} {_age(now - r.created):>6s}"
              f"  tries {r.attempts}{why}")
    refused = sum(r.state == "rejected" for r in rows)
    if refused:
        print(f"{refused} refused for good; once the cause is fixed: imapvm outbox retry ID "
              "(or --all)")
    return 0


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def _retry(args: argparse.Namespace, directory: Path) -> int:
    if args.all == bool(args.ids):
        raise CommandError("give the ids to retry, or --all (not both)")
    ids = None if args.all else list(args.ids)
    dep_ids = mail_ids = ids
    if ids is not None:  # each id is one kind's: send it to the queue that holds it
        held = {r.id: r.kind for r in _rows(directory) if r.state == "rejected"}
        dep_ids = [i for i in ids if held.get(i, "deposit") == "deposit"]
        mail_ids = [i for i in ids if held.get(i) in ("email", "pager")]
    done_d, problems = deposits.requeue(directory, dep_ids)
    done_m, problems_m = mail_queue.requeue(directory / "mail", mail_ids)
    problems += problems_m
    for item in done_d:
        print(f"deposit {item.id} for {item.mailbox}@{item.context}: back in the queue")
    for m in done_m:
        print(f"{m.kind} {m.id} for {m.mailbox}@{m.context}: back in the queue")
    for line in problems:
        err.print(f"imapvm outbox retry: {line}", markup=False)
    if done_d or done_m:
        print("a running `imapvm serve` delivers them within a minute (or at its next start); "
              "`imapvm outbox` shows what is left")
    elif ids is None:
        print("nothing was refused: nothing to retry")
    return 1 if problems else 0

