"""`imapvm mwi MAILBOX`: the counts the lamp shows (new includes urgent, as Asterisk publishes),
and where they come from."""

from __future__ import annotations

import argparse

from imapvm.commands._runtime import (
    add_config_args,
    add_json_arg,
    mailbox_ref,
    print_json,
    run_async,
)
from imapvm.config.loader import LoadedConfig
from imapvm.storage.router import RoutingStore


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("mwi", help="show a mailbox's message-waiting counts",
                              description=__doc__)
    p.add_argument("mailbox")
    add_json_arg(p)
    add_config_args(p)
    p.set_defaults(handler=lambda args: run_async(args, _mwi))


async def _mwi(args: argparse.Namespace, loaded: LoadedConfig, store: RoutingStore) -> int:
    box = mailbox_ref(args.mailbox, loaded)
    c = await store.counts(box)
    data = {"mailbox": str(box), "source": store.describe(box), "new": c.new, "old": c.old,
            "urgent": c.urgent, "messages_waiting": c.mwi_new > 0,
            "voice_message": f"{c.mwi_new}/{c.old} ({c.urgent}/0)"}
    if args.json:
        print_json(data)
        return 0
    print(f"{box}: Messages-Waiting: {'yes' if c.mwi_new else 'no'}  "
          f"Voice-Message: {data['voice_message']}")
    print(f"  new {c.new}, urgent {c.urgent}, old {c.old}; from {data['source']}")
    return 0
