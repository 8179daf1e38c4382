"""Deposit commit time of a 60 s voicemail on Dovecot.

Two figures per deposit, over N deposits of a real 60 s message (espeak-ng speech, built by the
message layer: wav + gsm attachments, about 1.4 MB of email):
- commit: `Outbox.submit` (email + metadata written and fsynced): when the caller may hear
  "goodbye";
- append: `ImapStore.deposit` (quota check + APPEND until APPENDUID): when a mail client can see it.

Percentiles over 200 deposits by default (a p99 over fewer is just the maximum), with the
maximum reported on its own.

Run: .venv/bin/python bench/deposit.py [--runs 200]
Last line: runs= deposit_p50_ms= deposit_p99_ms= deposit_max_ms= append_p50_ms= append_p99_ms=
append_max_ms= email_kib=
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (sets sys.path)
from _common import percentile
from tests.support.dovecot import DovecotServer
from tests.support.speech import speech

from imapvm.message import Deposit, EmailSettings, build_voicemail
from imapvm.storage.base import MailboxRef
from imapvm.storage.imap.account import ImapSettings
from imapvm.storage.imap.store import ImapStore
from imapvm.storage.outbox import Outbox

BOX = MailboxRef("1234", "default")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args()
    audio = speech(60.0)
    settings = EmailSettings(context="default", mailbox="1234", fullname="Bench",
                             emails=("bench@example.org",), formats=("wav", "gsm"))
    email = build_voicemail(Deposit(number=1, caller_id_num="5550100"), settings, audio).raw
    emails = (email.replace(b"Message-ID: <", f"Message-ID: <{i}.".encode(), 1)
              for i in range(args.runs))  # one distinct message per deposit
    server = DovecotServer("slash", quota_kb=10_000_000).start()
    workdir = Path(tempfile.mkdtemp(prefix="imapvm-bench-"))
    try:
        store = ImapStore(lambda box: ImapSettings(
            host=server.host, port=server.port, user="bench", password="bench-pw",
            vm_tag=box.mailbox, context=box.context, maxmsg=9999))
        outbox = Outbox(workdir / "outbox", store)  # no worker: measure the commit alone
        commit: list[float] = []
        append: list[float] = []
        for email in emails:
            t = time.perf_counter()
            await outbox.submit(BOX, email)
            commit.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            await store.deposit(BOX, email)
            append.append((time.perf_counter() - t) * 1000)
        await store.aclose()
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    kib = len(email) / 1024
    print(f"{args.runs} deposits of a 60 s message ({kib:.0f} KiB email)")
    print(f"  commit (outbox fsync)  p50={percentile(commit, 50):.1f} ms "
          f"p99={percentile(commit, 99):.1f} ms max={max(commit):.1f} ms")
    print(f"  append (IMAP APPEND)   p50={percentile(append, 50):.1f} ms "
          f"p99={percentile(append, 99):.1f} ms max={max(append):.1f} ms")
    print(f"runs={args.runs} deposit_p50_ms={percentile(commit, 50):.1f}"
          f" deposit_p99_ms={percentile(commit, 99):.1f} deposit_max_ms={max(commit):.1f}"
          f" append_p50_ms={percentile(append, 50):.1f} append_p99_ms={percentile(append, 99):.1f}"
          f" append_max_ms={max(append):.1f} email_kib={kib:.0f}")


if __name__ == "__main__":
    asyncio.run(main())
