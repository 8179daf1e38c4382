"""`imapvm deposit MAILBOX --audio FILE --caller "Name <number>" [--urgent]`: leave a voicemail
from a file as a caller would: the same e-mail, the same quota and maxmsg checks, the same
minsecs and maxsecs. A file shorter than minsecs is refused (a caller's message that short is
discarded); one longer than maxsecs is cut there, with a warning (a caller is cut off there
too). Unlike a call, silence is not trimmed (maxsilence) and the message goes to the store
directly, not through serve's outbox: when the connection is lost after sending, the store is
asked for the message's Message-ID, so it is neither reported failed nor stored twice.

Any audio file libsndfile reads is accepted (wav at any rate, flac, ogg, mp3, gsm, ...); it is
converted to 8 kHz mono. Only the seconds that are kept are decoded."""

from __future__ import annotations

import argparse
import asyncio
import re
from pathlib import Path

from imapvm.audio import upload
from imapvm.audio.core import MAX_AUDIO_BYTES
from imapvm.commands._runtime import CommandError, add_config_args, err, mailbox_ref, run_async
from imapvm.config.loader import LoadedConfig
from imapvm.ivr.record import UNLIMITED_SECONDS
from imapvm.message import FLAG_NONE, FLAG_URGENT, Deposit, build_voicemail
from imapvm.message.from_config import email_settings
from imapvm.notify.notifier import notify_after_deposit
from imapvm.storage.base import MailboxFull
from imapvm.storage.router import RoutingStore
from imapvm.storage.settle import deposit_settled


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("deposit", help="leave a voicemail from an audio file",
                              description=__doc__)
    p.add_argument("mailbox")
    p.add_argument("--audio", required=True, type=Path, help="the recording")
    p.add_argument("--caller", default="", help='caller id, e.g. "Alice <5551234>" or 5551234')
    p.add_argument("--urgent", action="store_true", help="mark the message urgent")
    add_config_args(p)
    p.set_defaults(handler=lambda args: run_async(args, _deposit))


def parse_caller(text: str) -> tuple[str, str]:
    """'"Alice" <5551234>' / 'Alice <5551234>' / '5551234' -> (name, number)."""
    m = re.match(r'^\s*"?([^"<]*?)"?\s*<([^>]*)>\s*$', text)
    if m:
        return m.group(1).strip(), m.group(2).strip()
    text = text.strip()
    return ("", text) if re.fullmatch(r"[+\d*#]*", text) else (text, "")


#: Bytes per second each stored format costs, for the size estimate made before decoding.
_BYTES_PER_SECOND = {"wav": 16000, "sln": 16000, "WAV": 1625, "gsm": 1650, "ulaw": 8000,
                     "alaw": 8000}


def estimated_kib(seconds: float, fmts: tuple[str, ...]) -> int:
    """The e-mail's size for `seconds` of audio in `fmts`: base64 (4/3) plus headers."""
    per_second = sum(_BYTES_PER_SECOND.get(f, 4000) for f in fmts) or 16000
    return int(seconds * per_second * 4 / 3 / 1024) + 8


async def _deposit(args: argparse.Namespace, loaded: LoadedConfig, store: RoutingStore) -> int:
    box = mailbox_ref(args.mailbox, loaded)
    ms = store.settings(box)
    path: Path = args.audio
    seconds = await asyncio.to_thread(upload.file_seconds, path)
    if seconds < ms.minsecs:
        raise CommandError(f"{path} is {seconds:.1f} s, shorter than minsecs={ms.minsecs} of "
                           f"{box}: a caller's message that short is discarded")
    keep = min(seconds, float(ms.maxsecs) if ms.maxsecs > 0 else UNLIMITED_SECONDS)
    settings = email_settings(ms, loaded.voicemail)
    need = estimated_kib(keep, settings.formats)
    if need * 1024 > MAX_AUDIO_BYTES:
        raise CommandError(
            f"{path}: {keep:.0f} s would make a message of about {need // 1024} MiB "
            f"(format={'|'.join(settings.formats)}), above the {MAX_AUDIO_BYTES // 2**20} MiB "
            f"one voicemail may have; set maxsecs for {box} or cut the file")
    quota = await store.quota(box)
    if quota.full(incoming_kib=need):
        raise MailboxFull(f"{box}: mailbox full ({quota.describe(need)})")
    got = await asyncio.to_thread(upload.read_upload, path, keep)
    audio = got.audio
    if got.truncated:
        err.print(f"imapvm deposit: warning: {path} is {seconds:.0f} s; kept the first "
                  f"{audio.duration:.0f} s (maxsecs={ms.maxsecs} of {box}), as a caller "
                  "would be cut off", markup=False)
    if audio.duration < max(ms.minsecs, 0.001):
        raise CommandError(f"{path} holds {audio.duration:.1f} s of audio, shorter than "
                           f"minsecs={ms.minsecs} of {box}")
    name, number = parse_caller(args.caller)
    counts = await store.counts(box)
    deposit = Deposit(number=counts.new + counts.old + counts.urgent + 1, caller_id_num=number,
                      caller_id_name=name, flag=FLAG_URGENT if args.urgent else FLAG_NONE)
    built = await asyncio.to_thread(build_voicemail, deposit, settings, audio)
    ref = await deposit_settled(store, box, built.raw, urgent=args.urgent)
    print(f"{ref}  ({audio.whole_seconds} s from {name or number or 'an unknown caller'})")
    for line in await notify_after_deposit(loaded, store, box, built.raw, ref):
        print(line)
    return 0
