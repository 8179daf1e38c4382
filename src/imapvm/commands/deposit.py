"""`imapvm deposit MAILBOX --audio FILE --caller "Name <number>" [--urgent]`: leave a voicemail
from a file, exactly as a caller would (same e-mail, same quota and maxmsg checks).

Any audio file soundfile reads is accepted (wav at any rate, flac, ogg, mp3, gsm, ...); it is
converted to 8 kHz mono."""

from __future__ import annotations

import argparse
import asyncio
import re
from pathlib import Path

import soundfile

from imapvm.audio import formats
from imapvm.audio.convert import to_telephony
from imapvm.audio.core import Audio
from imapvm.audio.errors import UnsupportedFormat
from imapvm.commands._runtime import add_config_args, mailbox_ref, run_async
from imapvm.config.loader import LoadedConfig
from imapvm.message import FLAG_NONE, FLAG_URGENT, Deposit, build_voicemail
from imapvm.message.from_config import email_settings
from imapvm.notify.notifier import notify_after_deposit
from imapvm.storage.router import RoutingStore


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("deposit", help="leave a voicemail from an audio file",
                              description=__doc__)
    p.add_argument("mailbox")
    p.add_argument("--audio", required=True, type=Path, help="the recording")
    p.add_argument("--caller", default="", help='caller id, e.g. "Alice <5551234>" or 5551234')
    p.add_argument("--urgent", action="store_true", help="mark the message urgent")
    add_config_args(p)
    p.set_defaults(handler=lambda args: run_async(args, _deposit))


def read_any(path: Path) -> Audio:
    """An Asterisk format by its suffix, else anything libsndfile reads (flac, aiff, ...)."""
    try:
        return formats.read_file(path)
    except UnsupportedFormat:
        samples, rate = soundfile.read(str(path), dtype="int16", always_2d=False)
        return to_telephony(samples, rate)


def parse_caller(text: str) -> tuple[str, str]:
    """'"Alice" <5551234>' / 'Alice <5551234>' / '5551234' -> (name, number)."""
    m = re.match(r'^\s*"?([^"<]*?)"?\s*<([^>]*)>\s*$', text)
    if m:
        return m.group(1).strip(), m.group(2).strip()
    text = text.strip()
    return ("", text) if re.fullmatch(r"[+\d*#]*", text) else (text, "")


async def _deposit(args: argparse.Namespace, loaded: LoadedConfig, store: RoutingStore) -> int:
    box = mailbox_ref(args.mailbox, loaded)
    audio = await asyncio.to_thread(read_any, args.audio)
    name, number = parse_caller(args.caller)
    counts = await store.counts(box)
    settings = email_settings(store.settings(box), loaded.voicemail)
    deposit = Deposit(number=counts.new + counts.old + counts.urgent + 1, caller_id_num=number,
                      caller_id_name=name, flag=FLAG_URGENT if args.urgent else FLAG_NONE)
    built = await asyncio.to_thread(build_voicemail, deposit, settings, audio)
    ref = await store.deposit(box, built.raw, urgent=args.urgent)
    print(f"{ref}  ({audio.whole_seconds} s from {name or number or 'an unknown caller'})")
    for line in await notify_after_deposit(loaded, store, box, built.raw, ref):
        print(line)
    return 0
