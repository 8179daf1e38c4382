"""`imapvm serve`: run the voicemail server.

Loads voicemail.conf and imapvm.toml (or, with neither, the embedded default: a demo mailbox in
a file spool under ./var and SIP on 127.0.0.1:5060), then answers calls, delivers deposits,
keeps the lamps right and serves /healthz and /metrics. SIGHUP reloads the configuration
without dropping calls; SIGTERM stops taking calls, lets running ones finish, flushes the outbox
and exits."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from imapvm.commands._runtime import add_config_args, err
from imapvm.server import VoicemailServer, resolve_config, setup_logging


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("serve", help="run the voicemail server", description=__doc__)
    add_config_args(p, imap_timeout=False)
    p.add_argument("--log-level", default="info",
                   choices=("debug", "info", "warning", "error"))
    p.add_argument("--log-format", default="text", choices=("text", "json"),
                   help="json: one JSON object per line, for log shippers")
    p.add_argument("--grace", type=float, default=30.0,
                   help="seconds to let calls finish and the outbox drain on SIGTERM")
    p.add_argument("--adopt-outbox", action="append", default=[], metavar="DIR", type=Path,
                   help="another node's outbox directory (shared or re-attached storage): "
                        "deliver what it holds once its node is gone (repeatable)")
    p.add_argument("--outbox-wait", type=float, default=60.0, metavar="SECONDS",
                   help="how long to wait at start-up for a node that adopted this node's "
                        "outbox to release it (default 60)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log_level, args.log_format)
    loaded, embedded = resolve_config(args.config, args.settings, dict(args.set))
    if not loaded.ok:
        for d in loaded.diagnostics:
            err.print(str(d), markup=False)
        err.print("imapvm serve: the configuration has errors (see above; `imapvm check` "
                  "explains them)", markup=False)
        return 2
    return asyncio.run(_serve(loaded, embedded, args.grace, args.adopt_outbox,
                              args.outbox_wait))


async def _serve(loaded, embedded: bool, grace: float,  # type: ignore[no-untyped-def]
                 adopt: list[Path], outbox_wait: float) -> int:
    from imapvm.server import default_flows

    deposit, check = default_flows()
    server = VoicemailServer(loaded, embedded=embedded, deposit_flow=deposit, check_flow=check,
                             adopt=adopt, outbox_wait=outbox_wait)
    try:
        await server.start()
    except OSError as exc:
        err.print(f"imapvm serve: cannot start: {exc}", markup=False)
        await server.stop(grace=0)
        return 1
    try:
        await server.serve_forever()
    finally:
        await server.stop(grace=grace)
    return 0
