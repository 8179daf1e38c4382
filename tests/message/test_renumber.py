"""Renumbering at delivery gives the bytes a build with that number would have given."""

from __future__ import annotations

import pytest

from imapvm.message import Deposit, EmailSettings, build_voicemail
from imapvm.message.build import _boundary
from imapvm.message.renumber import message_number, renumber
from tests.message.helpers import FIXED, sawtooth, settings, strict_parse

MID = "<Imapvm-fixed-1234@pbx.example.org>"


def _built(number: int, s: EmailSettings, *, partial: bool = False) -> bytes:
    dep = Deposit(number=number, caller_id_num="5551234", caller_id_name="Andy Dufresne",
                  orig_time=1_764_167_405, message_id=MID, partial=partial)
    return build_voicemail(dep, s, sawtooth(2.2), randomness=FIXED).raw


@pytest.mark.parametrize("s", [
    settings(),
    settings(formats=("wav",)),  # no nested part-1 group
    settings(emailsubject="Voicemail ${VM_MSGNUM} from ${VM_CALLERID}",
             emailbody="Hello ${VM_NAME},\\nmessage number ${VM_MSGNUM}.\\n", charset="UTF-8"),
    settings(pbxskip=True, fullname="Zoë Ünicode", charset="UTF-8"),
])
@pytest.mark.parametrize(("before", "after"), [(1, 14), (0, 3), (14, 15), (7, 0)])
@pytest.mark.parametrize("partial", [False, True])
def test_renumbered_equals_built_with_that_number(s: EmailSettings, before: int, after: int,
                                                  partial: bool) -> None:
    raw = _built(before, s, partial=partial)
    expected = _built(after, s, partial=partial).replace(
        _boundary(after, s, FIXED).strip("-").encode(),
        _boundary(before, s, FIXED).strip("-").encode())
    got = renumber(raw, after, s)
    assert got == expected
    assert message_number(got) == after
    strict_parse(got)


def test_unknown_number_is_left_out_of_the_default_subject() -> None:
    raw = renumber(_built(5, settings()), 0, settings())
    msg = strict_parse(raw)
    assert msg["Subject"] == "[PBX]: New message in mailbox 1234"
    assert "(number" not in msg.get_body(("plain",)).get_content()
