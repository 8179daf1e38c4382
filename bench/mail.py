"""Voicemail to e-mail throughput and the cost the outbox worker pays per stored voicemail.

Stores N two-minute voicemails' e-mails (wav + gsm, as the default format list writes them)
through the notifier into the durable mail queue, then sends them through an in-process SMTP
receiver (aiosmtpd) and through `mailcmd` (`cat > /dev/null`). Prints one line of key=value:

    hook_ms_p50/p99  time the outbox's delivery hook takes per voicemail (build + fsync)
    smtp_per_s       notifications (e-mail + pager) sent per second over SMTP
    mailcmd_per_s    the same through mailcmd

Usage: .venv/bin/python bench/mail.py [N]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (sys.path)
import numpy as np
from _common import percentile
from aiosmtpd.smtp import SMTP, Envelope, Session

from imapvm.audio.core import Audio
from imapvm.config.loader import load
from imapvm.config.settings import SmtpSettings
from imapvm.message import Deposit, build_voicemail
from imapvm.message.from_config import email_settings
from imapvm.notify.notifier import Notifier
from imapvm.notify.queue import MailItem, MailQueue
from imapvm.notify.transport import MailCommand, Smtp, Transport
from imapvm.storage.base import MailboxRef, MessageRef

BOX = MailboxRef("1234", "default")


class Sink:
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return "250 OK"


async def run(n: int) -> str:
    tmp = Path(tempfile.mkdtemp(prefix="imapvm-bench-mail-"))
    conf = tmp / "voicemail.conf"
    conf.write_text("[general]\nformat=wav|gsm\nserveremail=vm@pbx.test\n[default]\n"
                    "1234 => 4242,Alice,alice@example.com,alice-pager@example.com\n")
    loaded = load(conf, None)
    ms = loaded.voicemail.effective("1234", "default")
    t = np.arange(120 * 8000) / 8000
    audio = Audio((np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16))
    stored = build_voicemail(Deposit(number=1, caller_id_num="5550001"),
                             email_settings(ms, loaded.voicemail), audio).raw
    server = await asyncio.get_running_loop().create_server(lambda: SMTP(Sink()),
                                                            "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    results = {}
    hook_ms: list[float] = []
    for name, transport in (("smtp", Smtp(SmtpSettings(host="127.0.0.1", port=port,
                                                       starttls=False))),
                            ("mailcmd", MailCommand("sh -c 'cat > /dev/null'"))):
        def pick(_item: MailItem, transport: Transport = transport) -> Transport:
            return transport

        queue = MailQueue(tmp / name, pick)
        notifier = Notifier(queue, lambda _box: ms, hostname="pbx.test")
        for i in range(n):
            start = time.perf_counter()
            await notifier.stored(BOX, stored, MessageRef("INBOX", 1, i + 1))
            hook_ms.append((time.perf_counter() - start) * 1000)
        task = asyncio.create_task(queue.run())
        start = time.perf_counter()
        assert await queue.flush(600)
        results[name] = 2 * n / (time.perf_counter() - start)
        queue.stop()
        await task
    server.close()
    return (f"n={n} size_kib={len(stored) // 1024} hook_ms_p50={percentile(hook_ms, 50):.1f} "
            f"hook_ms_p99={percentile(hook_ms, 99):.1f} smtp_per_s={results['smtp']:.0f} "
            f"mailcmd_per_s={results['mailcmd']:.0f}")


if __name__ == "__main__":
    print(asyncio.run(run(int(sys.argv[1]) if len(sys.argv) > 1 else 50)))
