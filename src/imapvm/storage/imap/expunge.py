"""Deleting and moving exactly the voicemails asked for, and never any other message.

Asterisk sends a plain EXPUNGE after every delete, which also removes whatever the user had
flagged \\Deleted in a mail client (reference §6 #2). imapvm picks, per server, the strongest
strategy the server advertises:

1. UIDPLUS: `UID STORE +FLAGS (\\Deleted)` then `UID EXPUNGE <exactly those UIDs>`.
2. No UIDPLUS: flag \\Deleted, then EXPUNGE only if a `SEARCH DELETED` shows no \\Deleted message
   but ours in the folder; otherwise leave our messages flagged \\Deleted (every voicemail view
   already ignores them) and let the user's mail client expunge when it does. The window between
   that SEARCH and the EXPUNGE is one round trip; a client that flags mail \\Deleted inside it
   could lose that message, which is why UIDPLUS is always preferred.

`expunge=False` (voicemail.conf `expungeonhangup=no`) only flags.

Moves use MOVE where offered (RFC 6851: atomic, touches nothing else); otherwise COPY then the
delete rule above for the source message.
"""

from __future__ import annotations

import logging

from imapvm.storage.base import MessageRef
from imapvm.storage.imap.account import Account
from imapvm.storage.imap.connection import ImapConnection
from imapvm.storage.imap.protocol import Raw
from imapvm.storage.imap.responses import compress_set, search_uids

log = logging.getLogger(__name__)


async def delete_exactly(conn: ImapConnection, acct: Account, uids: list[int],
                         *, expunge: bool) -> None:
    """Flag `uids` (in the selected folder) \\Deleted and, if `expunge`, remove exactly them."""
    if not uids:
        return
    uid_set = compress_set(uids).encode()
    await conn.execute("UID", "STORE", Raw(uid_set), "+FLAGS.SILENT", Raw(b"(\\Deleted)"))
    if not expunge:
        return
    if conn.has("UIDPLUS"):
        await conn.execute("UID", "EXPUNGE", Raw(uid_set))
        return
    res = await conn.execute("UID", "SEARCH", "DELETED")
    flagged = set(search_uids(res.untagged))
    foreign = flagged - set(uids)
    if foreign:
        log.info("%s: %d other message(s) flagged \\Deleted in the folder; leaving ours flagged "
                 "instead of expunging them all (server has no UIDPLUS)", acct.label, len(foreign))
        return
    await conn.execute("EXPUNGE")


async def move_exactly(conn: ImapConnection, acct: Account, uid: int,
                       target: str) -> MessageRef | None:
    """Move one message (from the selected folder) to `target`; returns its new reference when
    the server says it (COPYUID) or it can be found again by Message-ID."""
    if conn.has("MOVE"):
        res = await conn.execute("UID", "MOVE", uid, target)
        code_res = res
        # RFC 6851: COPYUID comes in an untagged OK before the expunges, or in the tagged OK.
        for r in res.untagged:
            if r.code == "COPYUID":
                code_res = r  # type: ignore[assignment]
        new = _copyuid(code_res.code, code_res.code_args, target)
    else:
        res = await conn.execute("UID", "COPY", uid, target)
        new = _copyuid(res.code, res.code_args, target)
        await delete_exactly(conn, acct, [uid], expunge=True)
    return new


def _copyuid(code: str, args: list[object], target: str) -> MessageRef | None:
    if code != "COPYUID" or len(args) < 3:
        return None
    validity, dest = args[0], args[2]
    if not isinstance(validity, bytes) or not isinstance(dest, bytes) or not dest.isdigit():
        return None
    return MessageRef(target, int(validity), int(dest))
