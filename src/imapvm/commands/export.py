"""`imapvm export MAILBOX ID --out FILE`: write a voicemail to a file without marking it read.

The file name says what is written: `.eml` the whole stored e-mail; an audio suffix (`.wav`,
`.gsm`, `.WAV`, `.ulaw`, `.alaw`, `.mp3`, `.opus`) the recording in that format, converted if the
message does not carry it."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from imapvm.audio import formats
from imapvm.commands._runtime import add_config_args, mailbox_ref, run_async
from imapvm.config.loader import LoadedConfig
from imapvm.storage.base import MessageRef
from imapvm.storage.router import RoutingStore


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("export", help="save a voicemail (e-mail or audio) to a file",
                              description=__doc__)
    p.add_argument("mailbox")
    p.add_argument("id", help="message id as printed by `imapvm ls`")
    p.add_argument("--out", required=True, type=Path, help="file to write (.eml or audio)")
    add_config_args(p)
    p.set_defaults(handler=lambda args: run_async(args, _export))


async def _export(args: argparse.Namespace, loaded: LoadedConfig, store: RoutingStore) -> int:
    box = mailbox_ref(args.mailbox, loaded)
    ref = MessageRef.parse(args.id)
    out: Path = args.out
    if out.suffix.lower() == ".eml":
        data = await store.fetch(box, ref)
    else:
        want = out.suffix.lstrip(".")
        if not want:
            raise ValueError(f"{out}: give the file a suffix (.eml, .wav, .gsm, ...)")
        target = formats.lookup(want)
        audio = await store.fetch_audio(box, ref, prefer=(want, "wav", "wav49", "gsm"))
        part = audio.message
        if formats.lookup(part.fmt).name == target.name:
            data = part.data
        else:
            decoded = await asyncio.to_thread(formats.decode, part.data, part.fmt)
            data = await asyncio.to_thread(formats.encode, decoded, target)
    await asyncio.to_thread(out.write_bytes, data)
    print(f"wrote {len(data)} bytes to {out}")
    return 0
