"""Golden messages, compared byte for byte (set IMAPVM_UPDATE_GOLDEN=1 to rewrite them).

Every golden file was read and checked by hand against reference/asterisk-imap.md §2.2-§2.3 when
it was written; a diff here means the stored format changed, which must be deliberate.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from imapvm.message import (
    FLAG_URGENT,
    BuiltMessage,
    Deposit,
    VoicemailMeta,
    build_greeting,
    build_voicemail,
)
from tests.message.helpers import FIXED, sawtooth, settings, strict_parse
from tests.support import golden

GOLDEN = Path(__file__).parent / "golden"


def basic() -> BuiltMessage:
    return build_voicemail(
        Deposit(number=1, caller_id_num="5551234", caller_id_name="Andy Dufresne"),
        settings(),
        sawtooth(0.25),
        randomness=FIXED,
    )


def urgent_custom() -> BuiltMessage:
    return build_voicemail(
        Deposit(number=7, caller_id_num="0612345678", flag=FLAG_URGENT, priority=3),
        settings(
            fullname="Zoë Ångström",
            emails=("zoe@example.com", "zoe.home@example.net"),
            fromstring="Voicemail: ${VM_CIDNUM}",
            global_fromstring="Shawshank PBX",
            emailsubject="Message ${VM_MSGNUM} from ${VM_CALLERID} (${VM_DUR}).",
            emailbody="Hi ${VM_NAME},\\n\\n\\t${VM_FLAG} message, ${VM_DUR} long.\\nBye.\\n",
            pbxskip=True,
            formats=("gsm",),
            tz="Europe/Paris",
        ),
        sawtooth(0.3, step=53),
        randomness=FIXED,
    )


def forwarded() -> BuiltMessage:
    original = VoicemailMeta(
        number=2, context="default", extension="4324", caller_id_num="5551234",
        caller_id_name="Andy Dufresne", duration=42, orig_time=1795600000,
        msg_id="1795600000-0000beef",
    )
    deposit = Deposit.forward_of(
        original, number=5, by_mailbox="4324", by_context="default", at=1795700000
    )
    return build_voicemail(
        deposit,
        settings(formats=("wav",)),
        sawtooth(0.2),
        intro=sawtooth(0.1, step=91),
        randomness=FIXED,
    )


def greeting() -> BuiltMessage:
    return build_greeting("unavail", settings(formats=("wav",)), sawtooth(0.2), randomness=FIXED)


CASES: dict[str, Callable[[], BuiltMessage]] = {
    "voicemail_basic.eml": basic,
    "voicemail_urgent_custom.eml": urgent_custom,
    "forward_with_comment.eml": forwarded,
    "greeting_unavail.eml": greeting,
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_bytes(name: str) -> None:
    built = CASES[name]()
    path = GOLDEN / name
    if golden.updating():
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(built.raw)
    assert built.raw == path.read_bytes()


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_is_clean_rfc5322(name: str) -> None:
    raw = (GOLDEN / name).read_bytes()
    assert b"\n" not in raw.replace(b"\r\n", b"")  # every line ends in CRLF
    assert b"\r" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    strict_parse(raw)
