"""Which mailbox a call is for: Request-URI, RFC 4458, History-Info, Diversion, check users."""

from __future__ import annotations

import pytest

from imapvm.channel import CallerId, CallTarget
from imapvm.telephony.routing import RoutingConfig, caller_id, resolve_target
from imapvm.telephony.sip.message import SipRequest, parse_message

from .sipmsgs import invite

CONFIG = RoutingConfig(check_users=("*97", "vm"), strip_prefix=("+49",))


def req(uri: str = "sip:1234@127.0.0.1", extra: str = "") -> SipRequest:
    msg = parse_message(invite(uri=uri, extra=extra))
    assert isinstance(msg, SipRequest)
    return msg


@pytest.mark.parametrize(
    ("uri", "extra", "expected"),
    [
        ("sip:1234@h", "", CallTarget("deposit", "1234", None, "1234")),
        ("sip:%2A97@h", "", CallTarget("check", "alice", None, "*97")),
        ("sip:vm@h", "P-Asserted-Identity: <sip:+49301234@pbx>",
         CallTarget("check", "301234", None, "vm")),
        ("sip:voicemail@h;target=sip:2000%40h;cause=486", "",
         CallTarget("deposit", "2000", "busy", "voicemail")),
        ("sip:voicemail@h;target=sip:2000%40h;cause=408", "",
         CallTarget("deposit", "2000", "unavailable", "voicemail")),
        ("sip:vmbox@h", "Diversion: <sip:3000@pbx>;reason=user-busy;counter=1, <sip:1@x>",
         CallTarget("deposit", "3000", "busy", "vmbox")),
        ("sip:vmbox@h", "Diversion: <sip:3001@pbx>;reason=no-answer",
         CallTarget("deposit", "3001", "unavailable", "vmbox")),
        ("sip:vmbox@h",
         "History-Info: <sip:4000@pbx>;index=1, <sip:vmbox@h;cause=480>;index=1.1",
         CallTarget("deposit", "4000", "unavailable", "vmbox")),
        ("tel:+495551234", "", CallTarget("deposit", "5551234", None, "+495551234")),
    ],
)
def test_resolve_target(uri: str, extra: str, expected: CallTarget) -> None:
    assert resolve_target(req(uri, extra), CONFIG) == expected


def test_voicemail_users_restrict_rfc4458() -> None:
    config = RoutingConfig(voicemail_users=("voicemail",))
    other = req("sip:other@h;target=sip:2000%40h")
    assert resolve_target(other, config).mailbox == "other"


def test_caller_id_prefers_p_asserted_identity_and_handles_anonymous() -> None:
    pai = req(extra='P-Asserted-Identity: "Bob" <sip:2222@pbx>')
    assert caller_id(pai) == CallerId("2222", "Bob", "sip:2222@pbx")
    assert caller_id(req()) == CallerId("alice", "Alice", "sip:alice@10.0.0.1")
    anonymous = invite().replace(b"sip:alice@10.0.0.1", b"sip:anonymous@anonymous.invalid")
    anon = parse_message(anonymous)
    assert isinstance(anon, SipRequest)
    assert caller_id(anon).number is None
